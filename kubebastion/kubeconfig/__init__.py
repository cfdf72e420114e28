"""Step 4: the admin kubeconfig on the bastion. ``merge`` edits kubeconfig YAML (no I/O),
``certs`` reads the API certificate's names, ``remote`` writes on the bastion, ``task`` is
the Nornir task, ``verify`` the Ready check that follows it."""
