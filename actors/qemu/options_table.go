package qemu

// qemuOptions are the options of QEMU's command line (qemu-options.hx of
// QEMU 7.2, plus the few older ones GNS3 appliances still pass: -hdachs,
// -soundhw, -tb-size), by name without the dash, each with whether it
// takes an argument. ParseOptions needs it to tell an option's argument
// from the next option, exactly as QEMU will; a name not here is not a
// QEMU option.
var qemuOptions = map[string]bool{
	// Standard options.
	"h": false, "help": false, "version": false, "machine": true, "M": true, "cpu": true,
	"accel": true, "smp": true, "numa": true, "add-fd": true, "set": true, "global": true,
	"boot": true, "m": true, "mem-path": true, "mem-prealloc": false, "k": true,
	"audio-help": false, "audio": true, "audiodev": true, "soundhw": true, "device": true,
	"name": true, "uuid": true,
	// Block devices.
	"fda": true, "fdb": true, "hda": true, "hdb": true, "hdc": true, "hdd": true,
	"cdrom": true, "blockdev": true, "drive": true, "mtdblock": true, "sd": true,
	"pflash": true, "snapshot": false, "fsdev": true, "virtfs": true, "virtfs_synth": false,
	"iscsi": true, "hdachs": true,
	// USB.
	"usb": false, "usbdevice": true,
	// Display.
	"display": true, "nographic": false, "curses": false, "alt-grab": false, "ctrl-grab": false,
	"no-quit": false, "sdl": false, "spice": true, "portrait": false, "rotate": true,
	"vga": true, "full-screen": false, "g": true, "vnc": true, "win2k-hack": false,
	"no-fd-bootchk": false, "no-acpi": false, "no-hpet": false, "acpitable": true,
	"smbios": true, "show-cursor": false,
	// Network.
	"netdev": true, "nic": true, "net": true,
	// Character devices and TPM.
	"chardev": true, "tpmdev": true,
	// Boot images.
	"bios": true, "kernel": true, "append": true, "initrd": true, "dtb": true,
	"compat": true, "fw_cfg": true,
	// Debug and expert options.
	"serial": true, "parallel": true, "monitor": true, "qmp": true, "qmp-pretty": true,
	"mon": true, "debugcon": true, "pidfile": true, "singlestep": false, "preconfig": false,
	"S": false, "overcommit": true, "gdb": true, "s": false, "d": true, "D": true,
	"dfilter": true, "seed": true, "L": true, "enable-kvm": false, "xen-domid": true,
	"xen-attach": false, "xen-domid-restrict": false, "no-reboot": false, "no-shutdown": false,
	"action": true, "loadvm": true, "daemonize": false, "option-rom": true, "rtc": true,
	"icount": true, "watchdog": true, "watchdog-action": true, "echr": true, "incoming": true,
	"only-migratable": false, "nodefaults": false, "chroot": true, "runas": true,
	"prom-env": true, "semihosting": false, "semihosting-config": true, "old-param": false,
	"sandbox": true, "readconfig": true, "no-user-config": false, "trace": true,
	"plugin": true, "async-teardown": false, "msg": true, "dump-vmstate": true,
	"enable-sync-profile": false, "object": true, "qtest": true, "qtest-log": true,
	"tb-size": true, "realtime": true, "no-kvm": false, "localtime": false,
}
