"""Step 1: NAT on the bastion. ``plan`` decides (no I/O), ``task`` talks to the bastion,
``packages`` installs ``nftables`` when it is missing."""
