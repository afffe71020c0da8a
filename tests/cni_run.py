#!/usr/bin/env python3
"""A tiny CNI runtime for the demo: runs a conflist's plugins in order for
ADD (passing each result on as prevResult) and in reverse for DEL, inside a
node network namespace, the way libcni does. Argument vectors only.

usage: cni_run.py ADD|DEL conflist.json node-netns pod-netns-path cni-path
"""
import json
import os
import subprocess
import sys


def main():
    command, conflist_path, node, netns, cni_path = sys.argv[1:6]
    conflist = json.load(open(conflist_path))
    cache = conflist_path + ".result"
    env = dict(os.environ, CNI_COMMAND=command, CNI_CONTAINERID="demo-pod-1",
               CNI_NETNS=netns, CNI_IFNAME="eth0", CNI_PATH=cni_path,
               CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=demo")
    plugins = conflist["plugins"]
    prev = None
    if command == "DEL":
        plugins = list(reversed(plugins))
        if os.path.exists(cache):
            prev = json.load(open(cache))
    for plugin in plugins:
        conf = dict(plugin, cniVersion=conflist["cniVersion"], name=conflist["name"])
        if prev is not None:
            conf["prevResult"] = prev
        binary = None
        for d in cni_path.split(":"):
            if os.path.exists(os.path.join(d, plugin["type"])):
                binary = os.path.join(d, plugin["type"])
                break
        if binary is None:
            sys.exit("plugin %s not found in %s" % (plugin["type"], cni_path))
        p = subprocess.run(["ip", "netns", "exec", node, binary], input=json.dumps(conf).encode(),
                           env=env, capture_output=True)
        if p.returncode != 0:
            sys.stderr.write(p.stdout.decode() + p.stderr.decode())
            sys.exit("%s %s failed" % (plugin["type"], command))
        if command == "ADD":
            prev = json.loads(p.stdout)
    if command == "ADD":
        json.dump(prev, open(cache, "w"))
        print(json.dumps(prev))
    elif os.path.exists(cache):
        os.remove(cache)


if __name__ == "__main__":
    main()
