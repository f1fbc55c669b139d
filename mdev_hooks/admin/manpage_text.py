"""The fixed sections of mdev-hooks(8): what the hook does, its files, environment and examples (taken from README.md
and docs/DESIGN.md); manpage.py renders them beside what it reads from the command's parser.

Invariant: HOOK_TEXT is roff-escaped (\\- for a dash, \\(aq for a quote), the other tables plain text (render
escapes them); no section here repeats one the parser gives, and no default is written here (FILES takes its
paths from config.Config).
"""

from __future__ import annotations

from mdev_hooks.config import DEFAULT_PATH, Config

_DEFAULTS = Config()  # FILES names the default paths; the configuration keys come from share/config.toml

NAME_LINE = ("libvirt qemu hook that creates managed mediated devices (mdevs) before a VM starts and removes them "
             "after it stops")

# (section title, paragraphs); a paragraph starting with "* " is a bullet, one starting with "  " is shown verbatim
HOOK_TEXT: list[tuple[str, list[str]]] = [
    ("THE HOOK", [
        "libvirt runs the hook (installed as /etc/libvirt/hooks/qemu.d/50\\-mdev\\-hooks, or /etc/libvirt/hooks/qemu "
        "by mdev\\-hooks install) with DOMAIN OP SUBOP EXTRA and the domain XML on standard input. The domain names "
        "each managed mdev in its metadata, and uses it as a hostdev with managed=\\(aqyes\\(aq:",
        "  <metadata>\n"
        "    <mdev:mdevs xmlns:mdev=\"urn:mdev-hooks:domain:1\">\n"
        "      <mdev:device uuid=\"4b20d080-1b54-4048-85b3-a6a62d165c01\"\n"
        "                   parent=\"0000:00:02.0\" type=\"i915-GVTg_V5_4\"/>\n"
        "    </mdev:mdevs>\n"
        "  </metadata>\n"
        "  <hostdev mode='subsystem' type='mdev' managed='yes' model='vfio-pci'>\n"
        "    <source><address uuid='4b20d080-1b54-4048-85b3-a6a62d165c01'/></source>\n"
        "  </hostdev>",
        "parent is the name under /sys/class/mdev_bus/ (0000:00:02.0, matrix, 0.0.0313, mtty); type is the full "
        "type id (nvidia\\-231, i915\\-GVTg_V5_4, vfio_ap\\-passthrough, mtty\\-2). Only type=\\(aqmdev\\(aq "
        "hostdevs with managed=\\(aqyes\\(aq are acted on; any other mdev hostdev is the administrator's own device "
        "and is never touched. NVIDIA vGPU 17+ hosts (no mdev) use an entry <device kind=\"nvidia\\-vf\" "
        "parent=\"PF or VF\" type=\"ID\"/> next to a managed PCI hostdev on the VF.",
        "* prepare begin: everything is validated first (parent registered, waiting up to parent_wait seconds for "
        "one that is not yet; type offered, enough available_instances, no other domain owns the UUID); then, "
        "holding one lock per parent (sorted order, "
        "bounded wait), each device is claimed in the ledger, created, verified and its claim marked created. Any "
        "failure removes what this call created, in reverse order, and exits 1 with one line on standard error, "
        "which virsh start shows as its error.",
        "* release end (also after a failed start): removes exactly the devices the ledger says the hook created "
        "for this domain, under the parent lock; a device already gone is success; devices it adopted (they "
        "existed with the same parent and type, owned by no other domain) are left in place. It never removes "
        "another domain's device.",
        "* migrate begin and restore begin: for a domain with managed mdevs, check read\\-only that prepare will "
        "get every device ([parents] renames parents between hosts).",
        "* Every other operation exits 0 at once. The hook never writes to standard output and never calls virsh.",
        "libvirtd (virtqemud with modular daemons) looks for hook scripts when it starts and when it is reloaded, "
        "not when a file appears; once it knows of a qemu hook it re\\-reads the files on every call. A reload does "
        "not touch running VMs.",
    ])
]

FILES = [
    ("/etc/libvirt/hooks/qemu.d/50-mdev-hooks", "the hook (libvirt >= 6.5 runs every executable in qemu.d/); "
     "mdev-hooks install writes /etc/libvirt/hooks/qemu instead unless --qemu-d is given"),
    (DEFAULT_PATH, "the configuration, every setting commented out by default"),
    (_DEFAULTS.state_dir + "/", "the ledger: one JSON claim per device (mdev UUID, or VF address for nvidia-vf) naming "
     "the domain it was created for"),
    (_DEFAULTS.lock_dir + "/", "one lock file per parent device"),
    (_DEFAULTS.log_file, "the hook's log, one JSON object per line, opened anew by every hook run (unless "
     "log_file names another file, or the journal or syslog)"),
    ("/sys/class/mdev_bus/", "the mdev parents and their mdev_supported_types"),
]

ENVIRONMENT = [
    ("MDEV_HOOKS_CONFIG", "another configuration file (when running by hand or in tests; libvirt does not pass it "
     "to the hook)"),
    ("MDEV_HOOKS_DRY_RUN", "1/true/yes turns dry-run on, 0/false/no off, over the configuration file"),
    ("MDEV_HOOKS_VIRSH", "the program run instead of virsh by add, drop, gc and status"),
    ("MDEV_HOOKS_SYSFS_ROOT", "the sysfs the bash completion lists parents and types from (default /sys; "
     "--sysfs-root on the command line wins)"),
]

# after the main parser's own examples (README.md)
MORE_EXAMPLES = [
    ("Give a domain its metadata in one command (it replaces the whole element, so list every device):",
     ["virsh metadata vm1 --uri urn:mdev-hooks:domain:1 --key mdev --config \\",
      "  --set '<mdevs><device uuid=\"4b20d080-1b54-4048-85b3-a6a62d165c01\"",
      "          parent=\"0000:00:02.0\" type=\"i915-GVTg_V5_4\"/></mdevs>'"]),
    ("When no qemu hook existed when libvirtd started, tell it about the new one (running VMs are not touched):",
     ["systemctl reload libvirtd      # virtqemud with modular daemons",
      "kill -HUP $(cat /run/libvirtd.pid)      # without systemd"]),
]

SEE_ALSO = ["virsh(1)", "libvirtd(8)", "virtqemud(8)", "mdevctl(8)"]
