"""Process-level helpers: atomic file writes, kernel locks, GPU leases, stop signals, resume
points, the compute device, torchrun, progress lines and live curves. Imports nothing of vggrepro outside runtime/."""
