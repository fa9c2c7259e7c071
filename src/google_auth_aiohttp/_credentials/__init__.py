"""The credentials families, adapted to one async interface.

- :mod:`.adapters`: one adapter per family (legacy async, ``google.auth.aio``,
  sync credentials refreshed off the loop), told apart by behaviour;
- :mod:`.threads`: a thread of its own for each blocking refresh, its HTTP
  sent through the event loop;
- :mod:`.own_requests`: the mark of requests credentials make themselves;
- :mod:`.aio`: :class:`~google_auth_aiohttp.AioCredentials`;
- :mod:`.default`: :func:`~google_auth_aiohttp.default`.
"""
