//! The node agent: loads the gatehouse eBPF programs, attributes bypass connections to
//! node, pod, container and process, and ships alerts through the shared journal shipper.
