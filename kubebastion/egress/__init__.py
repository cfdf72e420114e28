"""Does every node reach the internet through the bastion? ``diagnose`` reads the probes'
output and names the cause (no I/O); ``task`` runs the probes on the nodes."""
