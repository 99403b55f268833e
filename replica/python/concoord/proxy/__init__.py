"""The seed's proxies, one module per built-in type: ``from concoord.proxy.counter import
Counter``. Each class takes ``(bootstrap, timeout=60, debug=False, token=None)`` as in
ConCoord 1.1, plus ``name=`` (another object than the class name, lower-cased) and
``client=`` (share a :class:`concoord.Client`)."""
