"""The ensemble and posterior stages end to end on a tiny config, and the posterior re-run alone."""

import numpy as np
import pytest

from pipeline.errors import UserError
from pipeline.jobs.opening import JobInfo
from pipeline.slt import tempering
from tests.helpers.jobs import execute

JOB = JobInfo(sweep="test-sweep", name="posterior")
TINY_POSTERIOR = [
    "+experiment=moons_posterior",
    "ensemble.members=12",
    "model.hidden=[16,16]",
    "train.steps=30",
    "llc.every=10",
    "llc.num_draws=10",
    "posterior.chains=3",
    "posterior.sgld.num_samples=30",
    "posterior.sgld.num_burnin_steps=10",
    "posterior.sgld.num_steps_bw_samples=2",
    "posterior.representation.points=8",
    "posterior.clustering.n_clusters=3",
    "posterior.clustering.n_init=2",
]


def test_ensemble_then_posterior_then_posterior_alone(tiny_cfg) -> None:
    cfg = tiny_cfg(*TINY_POSTERIOR)
    tracker, run_id, metrics = execute(cfg, JOB)
    r = tracker.get_run(run_id)
    assert r.status == "FINISHED"
    assert r.tags["stage.ensemble"] == "done" and r.tags["stage.posterior"] == "done"

    members = tracker.load_table(run_id, "members")
    assert members["seed"].tolist() == list(range(12)) and (members["step"] == 30).all()
    assert (members["status"] == "ok").all() and np.isfinite(members["alpha"]).all()
    assert (members["llc_method"] == "batched").all()
    np.testing.assert_allclose(members["d_s"], 2 * members["llc"] * members["alpha"])
    traj = tracker.load_table(run_id, "member_trajectory")
    assert len(traj) == 12 * 30 and traj.groupby("member")["step"].max().eq(30).all()

    post = tracker.load_table(run_id, "posterior_members")
    conv = post[post["converged"]]
    assert int(metrics["members_converged"]) == len(conv) and (conv["cluster"] >= 0).all()
    assert post["chain_seed"].sum() == 3 and post.loc[post["chain_seed"], "converged"].all()
    samples = tracker.load_table(run_id, "posterior_samples")
    assert len(samples) == 3 * 30 and samples["cluster"].between(0, 2).all()

    table = tracker.load_table(run_id, "clusters")
    assert len(table) == 3 and table["n_sgd"].sum() == len(conv) and table["n_bayes"].sum() == 90
    for col in ("share_sgd", "share_bayes", "share_tempered"):
        assert table[col].sum() == pytest.approx(1.0)
    assert list(table["n_sgd"]) == sorted(table["n_sgd"], reverse=True)  # C1 is SGD's favourite
    lam = conv.groupby("cluster")["llc"].mean()
    np.testing.assert_allclose(table["lambda"], lam.sort_index())

    sweep = tracker.load_table(run_id, "xi_sweep")
    t2 = tracker.load_json(run_id, "table2")
    assert t2["best_xi"] == sweep.loc[sweep["kl"].idxmin(), "xi"] == metrics["best_xi"]
    assert t2["kl"] == pytest.approx(sweep["kl"].min())
    assert sweep.loc[sweep["xi"] == 1.0, "kl"].iloc[0] == pytest.approx(t2["untempered"]["kl"])
    q = tempering.tempered(
        table["share_sgd"].to_numpy(),
        tempering.diffusion_coefficient(t2["best_xi"], table["d_walk"].to_numpy()),
    )
    assert tempering.kl(table["share_bayes"].to_numpy(), q) == pytest.approx(t2["kl"])
    figures = {f.path for f in tracker.client.list_artifacts(run_id, "figures")}
    assert {"figures/kl_vs_xi.png", "figures/llc_histogram.png", "figures/cluster_shares.png"} <= figures

    # Re-run clustering and tempering alone with other settings: same run, no retraining.
    _, same_id, later = execute(
        tiny_cfg(*TINY_POSTERIOR, "stages=[posterior]", "posterior.clustering.n_clusters=2"), JOB
    )
    assert same_id == run_id and later["clusters"] == 2
    assert tracker.load_table(run_id, "members").equals(members)
    assert len(tracker.load_table(run_id, "clusters")) == 2
    assert tracker.get_run(run_id).tags["override.posterior.clustering.n_clusters"] == "2"


def test_posterior_settings_are_checked_before_any_run(tiny_cfg) -> None:
    with pytest.raises(UserError, match="moons_posterior"):
        execute(tiny_cfg("stages=[ensemble,posterior]"), JOB)
    with pytest.raises(UserError, match="mixes two pipelines"):
        execute(tiny_cfg(*TINY_POSTERIOR, "stages=[train,posterior]"), JOB)
    with pytest.raises(UserError, match="posterior.chains"):
        execute(tiny_cfg(*TINY_POSTERIOR, "posterior.chains=0"), JOB)
    with pytest.raises(UserError, match="serial or batched"):
        execute(tiny_cfg(*TINY_POSTERIOR, "ensemble.llc=parallel"), JOB)
    with pytest.raises(UserError, match="cluster_on"):
        execute(tiny_cfg(*TINY_POSTERIOR, "posterior.cluster_on=both"), JOB)
    with pytest.raises(UserError, match="tempering.xi"):
        execute(tiny_cfg(*TINY_POSTERIOR, "posterior.tempering.xi=[0,1]"), JOB)
    with pytest.raises(UserError, match="run the ensemble stage first|no ensemble|no trained run"):
        execute(tiny_cfg(*TINY_POSTERIOR, "stages=[posterior]"), JOB)


def test_cli_prints_table_2(tmp_path, store) -> None:
    from tests.helpers.cli import launch
    from tests.helpers.config import TINY

    result = launch([*TINY, *TINY_POSTERIOR, f"tracking.uri={store}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "12 SGD members" in out and "Table 2 at best ξ" in out and "C1" in out


def test_ensemble_refuses_what_it_cannot_train(tiny_cfg) -> None:
    """The ensemble trains classifiers with one optimizer; anything else is one line, up front."""
    from pipeline.config import checks

    base = ["+experiment=moons_posterior_cpu"]
    with pytest.raises(UserError, match="classifiers only"):
        checks.check(tiny_cfg(*base, "+dataset.task._target_=pipeline.tasks.CausalLM"))
    with pytest.raises(UserError, match="one optimizer"):
        checks.check(tiny_cfg(*base, "+train.phases={head:{optimizer:{_target_:torch.optim.SGD},steps:1}}"))
