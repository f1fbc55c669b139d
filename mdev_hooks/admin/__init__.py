"""`mdev-hooks`: the administrator's command, one module per command (parser beside handler), may run virsh.

Invariant: the hook never imports this package (checked by a test of the hook's import graph).
"""
