package kvmrestore

import (
	"encoding/xml"
	"fmt"
)

// The libvirt domain XML (https://libvirt.org/formatdomain.html), only
// the elements a restore writes.

type domainXML struct {
	XMLName     xml.Name    `xml:"domain"`
	Type        string      `xml:"type,attr"`
	Name        string      `xml:"name"`
	UUID        string      `xml:"uuid,omitempty"`
	Description string      `xml:"description,omitempty"`
	Memory      sizeXML     `xml:"memory"`
	VCPU        int         `xml:"vcpu"`
	OS          osXML       `xml:"os"`
	Features    featuresXML `xml:"features"`
	CPU         cpuXML      `xml:"cpu"`
	Clock       clockXML    `xml:"clock"`
	Devices     devicesXML  `xml:"devices"`
}

type sizeXML struct {
	Unit  string `xml:"unit,attr"`
	Value int64  `xml:",chardata"`
}

type osXML struct {
	Type   osTypeXML  `xml:"type"`
	Loader *loaderXML `xml:"loader,omitempty"`
	NVRAM  *nvramXML  `xml:"nvram,omitempty"`
}

type osTypeXML struct {
	Arch    string `xml:"arch,attr"`
	Machine string `xml:"machine,attr"`
	Value   string `xml:",chardata"`
}

type loaderXML struct {
	Readonly string `xml:"readonly,attr"`
	Secure   string `xml:"secure,attr,omitempty"`
	Type     string `xml:"type,attr"`
	Path     string `xml:",chardata"`
}

type nvramXML struct {
	Template string `xml:"template,attr,omitempty"`
	Path     string `xml:",chardata"`
}

type empty struct{}

type featuresXML struct {
	ACPI   *empty     `xml:"acpi"`
	APIC   *empty     `xml:"apic"`
	HyperV *hypervXML `xml:"hyperv,omitempty"`
	SMM    *stateXML  `xml:"smm,omitempty"`
}

type stateXML struct {
	State string `xml:"state,attr"`
}

type hypervXML struct {
	Mode      string       `xml:"mode,attr"`
	Relaxed   stateXML     `xml:"relaxed"`
	VAPIC     stateXML     `xml:"vapic"`
	Spinlocks spinlocksXML `xml:"spinlocks"`
}

type spinlocksXML struct {
	State   string `xml:"state,attr"`
	Retries int    `xml:"retries,attr"`
}

type cpuXML struct {
	Mode     string      `xml:"mode,attr,omitempty"`
	Topology topologyXML `xml:"topology"`
}

type topologyXML struct {
	Sockets int `xml:"sockets,attr"`
	Dies    int `xml:"dies,attr"`
	Cores   int `xml:"cores,attr"`
	Threads int `xml:"threads,attr"`
}

type clockXML struct {
	Offset string     `xml:"offset,attr"`
	Timers []timerXML `xml:"timer"`
}

type timerXML struct {
	Name       string `xml:"name,attr"`
	TickPolicy string `xml:"tickpolicy,attr,omitempty"`
	Present    string `xml:"present,attr,omitempty"`
}

type devicesXML struct {
	Disks       []diskXML       `xml:"disk"`
	Controllers []controllerXML `xml:"controller"`
	Interfaces  []interfaceXML  `xml:"interface"`
	Serials     []charXML       `xml:"serial"`
	Consoles    []charXML       `xml:"console"`
	Inputs      []inputXML      `xml:"input"`
	Graphics    graphicsXML     `xml:"graphics"`
	Video       videoXML        `xml:"video"`
}

type diskXML struct {
	Type     string        `xml:"type,attr"`
	Device   string        `xml:"device,attr"`
	Driver   driverXML     `xml:"driver"`
	Source   *diskSource   `xml:"source,omitempty"`
	Target   diskTargetXML `xml:"target"`
	ReadOnly *empty        `xml:"readonly,omitempty"`
	Boot     *bootXML      `xml:"boot,omitempty"`
	Address  *addressXML   `xml:"address,omitempty"`
}

type driverXML struct {
	Name    string `xml:"name,attr"`
	Type    string `xml:"type,attr"`
	Discard string `xml:"discard,attr,omitempty"`
}

type diskSource struct {
	File string `xml:"file,attr"`
}

type diskTargetXML struct {
	Dev string `xml:"dev,attr"`
	Bus string `xml:"bus,attr"`
}

type bootXML struct {
	Order int `xml:"order,attr"`
}

type addressXML struct {
	Type       string `xml:"type,attr"`
	Controller int    `xml:"controller,attr"`
	Bus        int    `xml:"bus,attr"`
	Target     int    `xml:"target,attr"`
	Unit       int    `xml:"unit,attr"`
}

type controllerXML struct {
	Type  string `xml:"type,attr"`
	Index int    `xml:"index,attr"`
	Model string `xml:"model,attr,omitempty"`
}

type interfaceXML struct {
	Type   string    `xml:"type,attr"`
	MAC    *macXML   `xml:"mac,omitempty"`
	Source *ifaceSrc `xml:"source,omitempty"`
	Model  modelXML  `xml:"model"`
	Link   *stateXML `xml:"link,omitempty"`
}

type macXML struct {
	Address string `xml:"address,attr"`
}

type ifaceSrc struct {
	Network string `xml:"network,attr,omitempty"`
	Bridge  string `xml:"bridge,attr,omitempty"`
}

type modelXML struct {
	Type string `xml:"type,attr"`
}

type charXML struct {
	Type   string        `xml:"type,attr"`
	Source *charSource   `xml:"source,omitempty"`
	Target charTargetXML `xml:"target"`
}

type charSource struct {
	Path   string `xml:"path,attr"`
	Append string `xml:"append,attr,omitempty"`
}

type charTargetXML struct {
	Type string `xml:"type,attr,omitempty"`
	Port int    `xml:"port,attr"`
}

type inputXML struct {
	Type string `xml:"type,attr"`
	Bus  string `xml:"bus,attr"`
}

type graphicsXML struct {
	Type     string    `xml:"type,attr"`
	Port     int       `xml:"port,attr"`
	Autoport string    `xml:"autoport,attr"`
	Listen   string    `xml:"listen,attr"`
	Listens  listenXML `xml:"listen"`
}

type listenXML struct {
	Type    string `xml:"type,attr"`
	Address string `xml:"address,attr"`
}

type videoXML struct {
	Model modelXML `xml:"model"`
}

// XML renders the plan as a libvirt domain document.
func (p *Plan) XML() ([]byte, error) {
	d := domainXML{Type: p.DomainType, Name: p.Name, UUID: p.uuid, Description: p.desc,
		Memory: sizeXML{Unit: "MiB", Value: p.MemoryMB}, VCPU: p.CPUs,
		OS:       osXML{Type: osTypeXML{Arch: "x86_64", Machine: "q35", Value: "hvm"}},
		Features: featuresXML{ACPI: &empty{}, APIC: &empty{}},
		CPU:      cpuXML{Topology: topologyXML{Sockets: p.Sockets, Dies: 1, Cores: p.Cores, Threads: 1}},
		Clock:    clockXML{Offset: "utc", Timers: []timerXML{{Name: "rtc", TickPolicy: "catchup"}, {Name: "pit", TickPolicy: "delay"}, {Name: "hpet", Present: "no"}}},
	}
	if p.DomainType == DomainKVM {
		d.CPU.Mode = "host-passthrough"
	}
	if p.Firmware == "efi" {
		d.OS.Loader = &loaderXML{Readonly: "yes", Type: "pflash", Path: p.Loader}
		d.OS.NVRAM = &nvramXML{Template: p.NVRAMTemplate, Path: p.NVRAM}
		if p.SecureBoot {
			d.OS.Loader.Secure = "yes"
			d.Features.SMM = &stateXML{State: "on"}
		}
	}
	if p.GuestOS == OSWindows {
		d.Clock.Offset = "localtime"
		d.Features.HyperV = &hypervXML{Mode: "custom", Relaxed: stateXML{"on"}, VAPIC: stateXML{"on"}, Spinlocks: spinlocksXML{State: "on", Retries: 8191}}
		d.Clock.Timers = append(d.Clock.Timers, timerXML{Name: "hypervclock", Present: "yes"})
	}
	ctrl := map[string]int{} // SCSI controller model -> index
	for _, pd := range p.Disks {
		dx := diskXML{Type: "file", Device: "disk", Driver: driverXML{Name: "qemu", Type: p.Format, Discard: "unmap"},
			Source: &diskSource{File: pd.File}, Target: diskTargetXML{Dev: pd.Dev, Bus: pd.Bus}, Boot: &bootXML{Order: pd.BootOrder}}
		if pd.Bus == BusSCSI {
			idx, ok := ctrl[pd.Controller]
			if !ok {
				idx = len(ctrl)
				ctrl[pd.Controller] = idx
				d.Devices.Controllers = append(d.Devices.Controllers, controllerXML{Type: "scsi", Index: idx, Model: pd.Controller})
			}
			n := 0
			for _, o := range d.Devices.Disks {
				if o.Address != nil && o.Address.Controller == idx {
					n++
				}
			}
			dx.Address = &addressXML{Type: "drive", Controller: idx, Target: n}
		}
		d.Devices.Disks = append(d.Devices.Disks, dx)
	}
	sd := 0
	for _, pd := range p.Disks {
		if pd.Bus != BusVirtio {
			sd++
		}
	}
	for i := 0; i < p.CDROMs; i++ {
		d.Devices.Disks = append(d.Devices.Disks, diskXML{Type: "file", Device: "cdrom", Driver: driverXML{Name: "qemu", Type: "raw"},
			Target: diskTargetXML{Dev: devName("sd", sd+i), Bus: BusSATA}, ReadOnly: &empty{}})
	}
	for _, n := range p.NICs {
		ix := interfaceXML{Model: modelXML{Type: n.Model}}
		switch n.Target.Kind {
		case NetKindBridge:
			ix.Type, ix.Source = "bridge", &ifaceSrc{Bridge: n.Target.Name}
		case NetKindUser:
			ix.Type = "user"
		default:
			ix.Type, ix.Source = "network", &ifaceSrc{Network: n.Target.Name}
		}
		if n.MAC != "" {
			ix.MAC = &macXML{Address: n.MAC}
		}
		if !n.Connected {
			ix.Link = &stateXML{State: "down"}
		}
		d.Devices.Interfaces = append(d.Devices.Interfaces, ix)
	}
	if p.SerialLog != "" {
		src := &charSource{Path: p.SerialLog}
		d.Devices.Serials = []charXML{{Type: "file", Source: src, Target: charTargetXML{Port: 0}}}
		d.Devices.Consoles = []charXML{{Type: "file", Source: src, Target: charTargetXML{Type: "serial", Port: 0}}}
	} else {
		d.Devices.Serials = []charXML{{Type: "pty", Target: charTargetXML{Port: 0}}}
		d.Devices.Consoles = []charXML{{Type: "pty", Target: charTargetXML{Type: "serial", Port: 0}}}
	}
	d.Devices.Inputs = []inputXML{{Type: "tablet", Bus: "usb"}}
	d.Devices.Graphics = graphicsXML{Type: "vnc", Port: -1, Autoport: "yes", Listen: "127.0.0.1", Listens: listenXML{Type: "address", Address: "127.0.0.1"}}
	d.Devices.Video = videoXML{Model: modelXML{Type: "vga"}}
	out, err := xml.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("domain XML: %w", err)
	}
	return append(out, '\n'), nil
}
