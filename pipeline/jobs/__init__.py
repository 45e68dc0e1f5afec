"""One job's lifecycle: open (or reopen, claim, skip) its runs by the re-launch rules, run the
stages, apply the failure policy, print the report. A one-seed job is a one-member batch."""
