"""Process-level helpers: atomic file writes, kernel locks, GPU leases, stop signals, resume
points, the compute device, torchrun. Imports nothing of vggrepro outside runtime/."""
