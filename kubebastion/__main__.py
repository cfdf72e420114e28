"""``python -m kubebastion``: the same as the ``kubebastion`` command."""

from kubebastion.cli import main

if __name__ == "__main__":
    main()
