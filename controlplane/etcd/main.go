// Command etcd is the etcd server, exactly as upstream's own main package (go.etcd.io/etcd/v3, main.go):
// all of it lives in go.etcd.io/etcd/server/v3/etcdmain.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
