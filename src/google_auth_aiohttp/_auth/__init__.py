"""The auth layer: where a request's credentials come from and where they may go.

- :mod:`.origin`: the origin rule (which requests may carry the credentials'
  headers) and the redaction of a sent request's secrets;
- :mod:`.flow`: :class:`~.flow.AuthFlow`, which authorizes, sends, refreshes
  on a rejection and re-sends, for both clients;
- :mod:`.refresh`: :class:`~.refresh.Refresher`, the one owner of the refresh
  policy per credentials object (fresh, stale, expired; background refreshes;
  routes and bounds);
- :mod:`.single_flight`: one refresh (or certificate fetch) shared by all its
  callers, with hedges and budgets.
"""
