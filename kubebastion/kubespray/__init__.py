"""kubespray from the bastion, in small parts that each do one job.

Pure parts (``inventory``, ``source`` digests and command builders, ``playbook`` parsers,
``wheelhouse`` tags, ``health`` evaluation) are unit-tested with plain inputs; the parts that
talk to hosts take a ``HostShell`` and are exercised against the lab. The Nornir task
functions that put them together live in ``kubebastion.kubespray.task``.
"""
