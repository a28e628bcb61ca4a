// Command buildfixture builds (or finds) a cached scale fixture repository
// and prints its directory: go run ./internal/scalefixture/buildfixture -vms 1000.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"runtime/pprof"

	"github.com/cairnbackup/cairn/internal/scalefixture"
)

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	spec := scalefixture.Default
	flag.IntVar(&spec.VMs, "vms", spec.VMs, "number of VMs")
	flag.IntVar(&spec.Points, "points", spec.Points, "points per VM")
	flag.IntVar(&spec.DiskMiB, "disk-mib", spec.DiskMiB, "disk size of each VM in MiB")
	flag.IntVar(&spec.DataMiB, "data-mib", spec.DataMiB, "MiB of data in each VM's first point")
	flag.IntVar(&spec.ChangedBlocks, "changed", spec.ChangedBlocks, "changed blocks in each later point")
	flag.IntVar(&spec.Ext4VMs, "ext4", spec.Ext4VMs, "VMs with a real ext4 filesystem")
	cpuprofile := flag.String("cpuprofile", os.Getenv("CAIRN_FIXTURE_CPUPROFILE"), "write a CPU profile of the build to `FILE`")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	dir, err := scalefixture.Cached(ctx, spec, log.Printf)
	if err != nil {
		return err
	}
	fmt.Println(dir)
	return nil
}
