// Package nio is labd's data plane: the UDP tunnels between nodes and their
// link peers, and the port pools they and the consoles draw from. It knows
// nothing about actors or events and imports no other labd package.
package nio
