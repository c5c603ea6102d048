package actors

import "labd/actors/kind"

// DefaultNodeUser is the account labd runs node processes as when it runs
// as root (--node-user); make deps creates it.
const DefaultNodeUser = kind.DefaultUser

// NodeUser is the unprivileged account node processes run as (kind.User).
type NodeUser = kind.User

// LookupNodeUser finds the account node processes run as. The account
// must exist and must not be root.
func LookupNodeUser(name string) (*NodeUser, error) { return kind.LookupUser(name) }
