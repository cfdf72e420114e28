"""kubebastion: kubespray behind a bastion, in one command.

The Nornir task functions are the public API; import them into your own Nornir runs.
"""

__version__ = "0.1.0"
