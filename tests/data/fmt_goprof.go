// A CPU profile written by Go's own runtime/pprof, for tests/test_formats_pprof.py:
// go run fmt_goprof.go OUT.pb.gz SECONDS
// mix is inlined into spin, so some locations carry two lines; pprof.Do adds a label.
package main

import (
	"context"
	"os"
	"runtime/pprof"
	"strconv"
	"time"
)

func mix(x uint64) uint64 {
	x ^= x << 13
	x ^= x >> 7
	x ^= x << 17
	return x
}

//go:noinline
func spin(n int) uint64 {
	var s uint64 = 1
	for i := 0; i < n; i++ {
		s = mix(s) + uint64(i)
	}
	return s
}

func main() {
	f, err := os.Create(os.Args[1])
	if err != nil {
		panic(err)
	}
	secs, _ := strconv.ParseFloat(os.Args[2], 64)
	if err := pprof.StartCPUProfile(f); err != nil {
		panic(err)
	}
	end := time.Now().Add(time.Duration(secs * float64(time.Second)))
	var s uint64
	pprof.Do(context.Background(), pprof.Labels("phase", "spin"), func(ctx context.Context) {
		for time.Now().Before(end) {
			s += spin(100000)
		}
	})
	pprof.StopCPUProfile()
	if err := f.Close(); err != nil {
		panic(err)
	}
	if s == 42 {
		println(s)
	}
}
