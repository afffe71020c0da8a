// libcni-driver runs a CNI conflist through Debian's libcni, the library that
// containerd, CRI-O and podman use, so tests can show that a real runtime
// runs gwsteer's conflists.
//
// Usage:
//
//	libcni-driver add|check|del|cached <conflist.json> <netns-path> <container-id> <ifname> [K=V;K=V]
//	libcni-driver cnitool add|check|del <network-name> <netns-path>
//
// The cnitool form behaves as upstream's cnitool (which Debian does not
// ship): the conflist whose "name" is <network-name> is found in
// $NETCONFPATH (default /etc/cni/net.d) by libcni's LoadConfList, the
// interface is $CNI_IFNAME (default eth0), $CNI_ARGS are the CNI args, and
// the container id is "cnitool-" and the first 20 hex digits of the
// netns path's SHA-512.
//
// Environment: CNI_PATH (colon-separated plugin dirs, required) and
// CNI_CACHE_DIR (libcni's cache dir; required so tests never share
// /var/lib/cni). The ADD result (and, for "cached", the cached ADD result) is
// printed on stdout as JSON. On failure the error goes to stderr, the exit
// code is 1 and, when the error is a CNI error (*types.Error), its JSON
// ({"code", "msg", "details"}) is printed on stdout, as a plugin would, plus a
// "cni-error-code: N" line on stderr.
//
// Build (Debian's GOPATH packages, no modules):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o <out> .
package main

import (
	"context"
	"crypto/sha512"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
)

const usage = "usage: libcni-driver add|check|del|cached <conflist.json> <netns-path> <container-id> <ifname> [K=V;K=V]"

// parseArgs splits CNI_ARGS-style "K=V;K=V" into libcni's pairs.
func parseArgs(s string) ([][2]string, error) {
	var out [][2]string
	for _, kv := range strings.Split(s, ";") {
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("invalid CNI arg %q: want K=V", kv)
		}
		out = append(out, [2]string{k, v})
	}
	return out, nil
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "libcni-driver: %v\n", err)
	var cniErr *types.Error
	if errors.As(err, &cniErr) {
		fmt.Fprintf(os.Stderr, "cni-error-code: %d\n", cniErr.Code)
		if b, jerr := json.Marshal(cniErr); jerr == nil {
			fmt.Println(string(b))
		}
	}
	os.Exit(1)
}

// cnitoolArgs rewrites the cnitool form into the driver's own arguments.
func cnitoolArgs(args []string) (op string, list *libcni.NetworkConfigList, netns, id, ifName, cniArgs string) {
	if len(args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: libcni-driver cnitool add|check|del <network-name> <netns-path>")
		os.Exit(2)
	}
	dir := os.Getenv("NETCONFPATH")
	if dir == "" {
		dir = "/etc/cni/net.d"
	}
	l, err := libcni.LoadConfList(dir, args[1])
	if err != nil {
		fail(err)
	}
	ifName = os.Getenv("CNI_IFNAME")
	if ifName == "" {
		ifName = "eth0"
	}
	id = fmt.Sprintf("cnitool-%x", sha512.Sum512([]byte(args[2])))[:len("cnitool-")+20]
	return args[0], l, args[2], id, ifName, os.Getenv("CNI_ARGS")
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "cnitool" {
		op, list, netns, id, ifName, cniArgs := cnitoolArgs(os.Args[2:])
		run(op, list, netns, id, ifName, cniArgs)
		return
	}
	if len(os.Args) < 6 || len(os.Args) > 7 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	op, confPath, netnsPath, containerID, ifName := os.Args[1], os.Args[2], os.Args[3], os.Args[4], os.Args[5]
	list, err := libcni.ConfListFromFile(confPath)
	if err != nil {
		fail(err)
	}
	cniArgs := ""
	if len(os.Args) == 7 {
		cniArgs = os.Args[6]
	}
	run(op, list, netnsPath, containerID, ifName, cniArgs)
}

func run(op string, list *libcni.NetworkConfigList, netnsPath, containerID, ifName, cniArgs string) {
	var err error
	cniPath := os.Getenv("CNI_PATH")
	if cniPath == "" {
		fmt.Fprintln(os.Stderr, "libcni-driver: CNI_PATH is not set")
		os.Exit(2)
	}
	cacheDir := os.Getenv("CNI_CACHE_DIR")
	if cacheDir == "" {
		fmt.Fprintln(os.Stderr, "libcni-driver: CNI_CACHE_DIR is not set (refusing to use /var/lib/cni)")
		os.Exit(2)
	}

	rt := &libcni.RuntimeConf{
		ContainerID: containerID,
		NetNS:       netnsPath,
		IfName:      ifName,
	}
	if cniArgs != "" {
		if rt.Args, err = parseArgs(cniArgs); err != nil {
			fail(err)
		}
	}

	cni := libcni.NewCNIConfigWithCacheDir(filepath.SplitList(cniPath), cacheDir, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	switch op {
	case "add":
		result, err := cni.AddNetworkList(ctx, list, rt)
		if err != nil {
			fail(err)
		}
		if err := result.PrintTo(os.Stdout); err != nil {
			fail(err)
		}
	case "check":
		if err := cni.CheckNetworkList(ctx, list, rt); err != nil {
			fail(err)
		}
	case "del":
		if err := cni.DelNetworkList(ctx, list, rt); err != nil {
			fail(err)
		}
	case "cached":
		result, err := cni.GetNetworkListCachedResult(list, rt)
		if err != nil {
			fail(err)
		}
		if result == nil {
			fail(fmt.Errorf("no cached result for %s/%s/%s", list.Name, containerID, ifName))
		}
		if err := result.PrintTo(os.Stdout); err != nil {
			fail(err)
		}
	default:
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
}
