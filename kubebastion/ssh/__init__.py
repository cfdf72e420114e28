"""The SSH layer: one verified login per host, commands and files over it.

Everything that talks to a host goes through here: the Nornir connection plugin
(``connection``), the per-host shell with its one exec loop (``shell``, ``stream``), the
remote file commands (``remote``), the channel helpers and the local tunnel. Fabric's
``gateway=`` and ``forward_local`` are not used: ``connection`` says why.
"""
