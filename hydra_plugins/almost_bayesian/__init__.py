"""Hydra's search path keeps the product's configs (`conf/`) whatever the primary config folder is.

With `-cp /my/conf -cn myexp` Hydra searches only the user's folder, so a primary config of one's
own could not start from the product's (`defaults: [config, ...]`). Hydra finds this plugin in the
`hydra_plugins` namespace next to launch.py; the folder goes after the primary one, so a user's
config of the same name wins.
"""

from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

CONF = Path(__file__).resolve().parents[2] / "conf"


class ProductConfigs(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append(provider="almost-bayesian", path=f"file://{CONF}")
