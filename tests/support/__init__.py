"""What the test modules share (no test module imports another): running the real hook (hookrun), the fake virsh,
the fault matrix, the CLI's world, the NVIDIA vGPU VFs, ids, one domain-XML builder (domxml), one-line assertions,
golden files and the unit tier's plain-directory hosts.

Invariant: the unit tier imports product modules (mdev_hooks.*) through product.py only.
"""
