// Package nio is labd's data plane: the bridges between node ports and
// their links (whose node side is a UDP tunnel to a node's process, a TAP
// device, a host interface, or a port of an in-process Ethernet switch or
// hub), the link filters and capture hooks they run, and the port pools
// they and the consoles draw from. It knows nothing about actors or
// events and imports no other labd package.
package nio
