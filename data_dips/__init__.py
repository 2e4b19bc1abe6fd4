"""HTTP data dips: the fetcher port and its real adapter (network and in-process back-ends)."""
