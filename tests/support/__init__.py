"""What the test modules share (no test module imports another nor redefines a name defined here): the ids (ids),
the one one-line assertion (asserts), the one domain-XML builder (domxml; hookrun, nvidia_vf, attrxml and
tests/libvirt/lvlab wrap it), running the real hook (hookrun), the fake virsh, the fault matrix and the fault tests'
worlds and kill points (faultmatrix, faultworld), the hostile-XML harness (hostile), syscalls on the fake (fakeio),
the CLI's world, NVIDIA vGPU VFs (nvidia_vf), golden files and the unit tier's plain-directory hosts.

Invariant: the unit tier imports product modules (mdev_hooks.*) through product.py only.
"""
