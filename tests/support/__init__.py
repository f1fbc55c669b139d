"""What the test modules share (no test module imports another): running the real hook, the fake virsh, the fault
matrix, the CLI world, the NVIDIA vGPU VF helpers, ids and one-line assertions."""
