// Package qemu will hold labd's QEMU node driver: the configuration of a
// QEMU node, the command line that starts qemu-system-* for it, and the
// node's life cycle (start, ACPI power-down through QMP, stop), driven by
// the node actor.
package qemu
