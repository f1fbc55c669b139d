"""What runs under libvirt's domain lock: plan (read-only validation), prepare and release, with the ledger and locks.

Invariant: never imports mdev_hooks.admin, never runs virsh or talks to libvirt (libvirt holds the domain's lock).
"""
