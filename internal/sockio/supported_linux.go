package sockio

// supported: Wrap wraps TCP connections (Linux only).
const supported = true
