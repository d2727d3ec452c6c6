// Command atomkernel-go-peer is the latency lab's Go runtime peer (peer:go): the lab's
// workloads, atom for atom, in a Go program, with cyclictest's probe as goroutines.
//
// Mechanism. As many Ps as the atomkernel instances compared have CPUs: runtime.GOMAXPROCS(
// -procs), 1 by default. A worker goroutine per P makes calls of the workload's atoms back to
// back and never yields: it is plain Go code, and Go's runtime preempts it by itself. The runtime's monitor thread (sysmon)
// finds a goroutine that has run for more than 10 ms (forcePreemptNS) and marks it for
// preemption twice over: it poisons the goroutine's stack guard, so the next function
// prologue's stack check calls into the scheduler (a preemption point in every prologue,
// armed from outside by one store: a cousin of the 1996 "crazy idea" of arming the next
// preemption point from the interrupt), and it sends the thread a signal (SIGURG) whose
// handler, if the interrupted instruction is an async-safe point, rewrites the signal's saved
// context so that the goroutine calls asyncPreempt (as atomkernel's `full` model injects
// preempt_schedule_irq). Each probe is a goroutine looping `next += interval;
// time.Sleep(time.Until(next)); late = time.Since(next)`: it runs when the runtime's timer
// has fired and the worker has been preempted.
//
// Invariant. The atoms are the Rust workloads' (crates/services/src/lab/workloads.rs and
// loader.rs) operation for operation, which -selftest lets a test check; timing starts after
// set-up (the image read, the buffers allocated), and every sample taken is printed.
//
// Output (stdout, one record a line): `G <go version> <GOMAXPROCS>`, then `S <probe> <late_ns>
// <disturbed 0|1>` per sample, then `W <units> <worker_ns>` (the workers' units summed, the
// longest worker's wall time). "Disturbed": the process's
// involuntary context switches (getrusage RUSAGE_SELF ru_nivcsw, every thread of the
// process) changed during the sample's period.
//
// Standard library only; Go 1.19 or newer (sync/atomic.Bool). crates/services/build.rs builds it.
package main

import (
	"bufio"
	"encoding/binary"
	"flag"
	"fmt"
	"hash/fnv"
	"math/bits"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"
)

const page = 4096

// atoms is one call's worth of work, atom by atom (the Rust trait Atoms).
type atoms interface {
	begin()
	atom() bool
	finish() uint64
}

// copyAtoms copies one 4 KiB page per atom from src (byte i = i mod 256) to dst.
type copyAtoms struct {
	pages, done int
	src, dst    []byte
}

func newCopy(pages int) *copyAtoms {
	src := make([]byte, pages*page)
	for i := range src {
		src[i] = byte(i)
	}
	return &copyAtoms{pages: pages, src: src, dst: make([]byte, pages*page)}
}

func (c *copyAtoms) begin() { c.done = 0 }

func (c *copyAtoms) atom() bool {
	lo := c.done * page
	copy(c.dst[lo:lo+page], c.src[lo:lo+page])
	c.done++
	return c.done < c.pages
}

func (c *copyAtoms) finish() uint64 { return uint64(c.pages) }

// csum is crate::atoms::csum: RFC 1071, big-endian 16-bit words summed in 64 bits, an odd last
// byte padded with zero, folded, complemented.
func csum(data []byte) uint16 {
	var sum uint64
	for i := 0; i < len(data); i += 2 {
		word := uint64(data[i]) << 8
		if i+1 < len(data) {
			word |= uint64(data[i+1])
		}
		sum += word
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// csumAtoms checksums one page of 0x5a per atom.
type csumAtoms struct {
	pages, done int
	page        []byte
	acc         uint16
}

func (c *csumAtoms) begin() { c.done = 0 }

func (c *csumAtoms) atom() bool {
	c.acc ^= csum(c.page)
	c.done++
	return c.done < c.pages
}

func (c *csumAtoms) finish() uint64 { return uint64(c.pages) }

// hogAtoms runs 2048 rounds of an integer hash per atom; x carries over between calls.
type hogAtoms struct {
	atoms, done int
	x           uint64
}

func (h *hogAtoms) begin() { h.done = 0 }

func (h *hogAtoms) atom() bool {
	x := h.x
	for i := 0; i < 2048; i++ {
		x = bits.RotateLeft64((x^(x>>31))*0xbf58476d1ce4e5b9, 17)
	}
	h.x = x
	h.done++
	return h.done < h.atoms
}

func (h *hogAtoms) finish() uint64 { return uint64(h.atoms) }

// loaderAtoms loads the a.out module once per call, at a load address that varies per call
// (LoaderAtoms::begin).
type loaderAtoms struct {
	l     *loader
	loads uint32
}

func (a *loaderAtoms) begin() {
	a.loads++
	a.l.restart(0x0040_0000 + (a.loads%64)*0x0010_0000)
}

func (a *loaderAtoms) atom() bool {
	more, err := a.l.atom()
	if err != nil {
		fail(1, "loader: the image does not load: %v (it is the one loader::build_image wrote; rebuild atomkernel)", err)
	}
	return more
}

func (a *loaderAtoms) finish() uint64 { return 1 }

// makeWorkload builds a workload's atoms; the loader reads its image here, before any timing.
func makeWorkload(name string, size int, image string) (atoms, error) {
	if size < 1 || size > 1<<20 {
		return nil, fmt.Errorf("-size %d: use 1..=1048576", size)
	}
	switch name {
	case "copy":
		return newCopy(size), nil
	case "checksum":
		p := make([]byte, page)
		for i := range p {
			p[i] = 0x5a
		}
		return &csumAtoms{pages: size, page: p}, nil
	case "hog":
		return &hogAtoms{atoms: size, x: 0x9e3779b97f4a7c15}, nil
	case "loader":
		file, err := os.ReadFile(image)
		if err != nil {
			return nil, fmt.Errorf("-image %q: cannot read the a.out image: %v (pass the file loader::build_image wrote)", image, err)
		}
		return &loaderAtoms{l: newLoader(file)}, nil
	}
	return nil, fmt.Errorf("-workload %q: unknown; use loader, copy, checksum or hog (packet needs atomkernel's softirqs)", name)
}

type sample struct {
	late      time.Duration
	disturbed bool
}

// nivcsw is the process's involuntary context switches so far (every thread).
func nivcsw() int64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return ru.Nivcsw
}

// probe is cyclictest's loop on absolute deadlines; ready is signalled before the first sleep.
func probe(start, deadline time.Time, interval time.Duration, ready *sync.WaitGroup, out *[]sample) {
	next := start
	ready.Done()
	for {
		next = next.Add(interval)
		if next.After(deadline) {
			return
		}
		before := nivcsw()
		time.Sleep(time.Until(next))
		late := time.Since(next)
		if late < 0 {
			late = 0
		}
		*out = append(*out, sample{late, nivcsw() != before})
	}
}

// worker makes calls of w, atoms back to back, until stop is set (read between calls).
func worker(w atoms, stop *atomic.Bool, done chan<- [2]uint64) {
	t0 := time.Now()
	var units uint64
	for !stop.Load() {
		w.begin()
		for w.atom() {
		}
		units += w.finish()
	}
	done <- [2]uint64{units, uint64(time.Since(t0))}
}

// run times the probes beside the workers (one per P, if a workload was named) for ns
// nanoseconds and prints the records. The probes are asleep on their first deadline before
// the workers start.
func run(ws []atoms, intervals []time.Duration, ns time.Duration) {
	samples := make([][]sample, len(intervals))
	for i, iv := range intervals {
		samples[i] = make([]sample, 0, int(ns/iv)+1)
	}
	// The clock starts once the run is in place (the lab's rule): each worker's first call,
	// its first touch of memory, is made before and not counted.
	for _, w := range ws {
		w.begin()
		for w.atom() {
		}
		w.finish()
	}
	start := time.Now()
	deadline := start.Add(ns)
	var ready, probes sync.WaitGroup
	for i, iv := range intervals {
		ready.Add(1)
		probes.Add(1)
		go func(i int, iv time.Duration) {
			defer probes.Done()
			probe(start, deadline, iv, &ready, &samples[i])
		}(i, iv)
	}
	ready.Wait()
	var stop atomic.Bool
	done := make(chan [2]uint64, len(ws))
	for _, w := range ws {
		go worker(w, &stop, done)
	}
	time.Sleep(time.Until(deadline))
	probes.Wait()
	stop.Store(true)
	var units, wall uint64
	for range ws {
		f := <-done
		units += f[0]
		if f[1] > wall {
			wall = f[1]
		}
	}
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintf(out, "G %s %d\n", runtime.Version(), runtime.GOMAXPROCS(0))
	for i, s := range samples {
		for _, x := range s {
			d := 0
			if x.disturbed {
				d = 1
			}
			fmt.Fprintf(out, "S %d %d %d\n", i, x.late.Nanoseconds(), d)
		}
	}
	fmt.Fprintf(out, "W %d %d\n", units, wall)
	if err := out.Flush(); err != nil {
		fail(1, "cannot write the results to stdout: %v", err)
	}
}

// selftest prints what one call of each workload computed, for the Rust side to compare:
// `checksum <csum of one page> <acc after a call of size pages>`, `hog <x after a call of size
// atoms>`, `copy <FNV-1a 64 of dst after a call of size pages>`, and with an image, per call
// k = 1, 2: `loader <k> <load address> <FNV-1a 64 of the module memory> <relocations so far>`.
func selftest(size int, image string) {
	c, _ := makeWorkload("checksum", size, "")
	ca := c.(*csumAtoms)
	one := csum(ca.page)
	call(c)
	fmt.Printf("checksum %d %d\n", one, ca.acc)
	h, _ := makeWorkload("hog", size, "")
	call(h)
	fmt.Printf("hog %d\n", h.(*hogAtoms).x)
	cp, _ := makeWorkload("copy", size, "")
	call(cp)
	fmt.Printf("copy %d\n", fnv64(cp.(*copyAtoms).dst))
	if image == "" {
		return
	}
	l, err := makeWorkload("loader", size, image)
	if err != nil {
		fail(2, "%v", err)
	}
	la := l.(*loaderAtoms)
	for k := 1; k <= 2; k++ {
		call(l)
		fmt.Printf("loader %d %d %d %d\n", k, la.l.base, fnv64(la.l.image), la.l.relocations)
	}
}

func call(w atoms) {
	w.begin()
	for w.atom() {
	}
	w.finish()
}

func fnv64(b []byte) uint64 {
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64()
}

func le32(b []byte) uint32 { return binary.LittleEndian.Uint32(b) }

func fail(code int, format string, args ...any) {
	fmt.Fprintf(os.Stderr, "atomkernel-go-peer: "+format+"\n", args...)
	os.Exit(code)
}

func parseIntervals(list string) ([]time.Duration, error) {
	var out []time.Duration
	for _, f := range strings.Split(list, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil || n < 1000 {
			return nil, fmt.Errorf("-probes %q: %q is not an interval in ns (at least 1000)", list, f)
		}
		out = append(out, time.Duration(n))
	}
	return out, nil
}

func main() {
	name := flag.String("workload", "", "loader, copy, checksum, hog, or empty for no worker")
	size := flag.Int("size", 64, "the workload's size (pages, atoms; the loader's comes from its image)")
	ns := flag.Int64("ns", 0, "length of the run in ns")
	probeList := flag.String("probes", "", "probe intervals in ns, comma separated (one probe each)")
	image := flag.String("image", "", "the a.out image of the loader workload (loader::build_image)")
	self := flag.Bool("selftest", false, "print what one call of each workload computes and exit")
	procs := flag.Int("procs", 1, "GOMAXPROCS, and the number of worker goroutines (1..=256)")
	flag.Parse()
	if *procs < 1 || *procs > 256 {
		fail(2, "-procs %d: use 1..=256", *procs)
	}
	runtime.GOMAXPROCS(*procs)
	if *self {
		selftest(*size, *image)
		return
	}
	intervals, err := parseIntervals(*probeList)
	if err != nil {
		fail(2, "%v", err)
	}
	if *ns <= 0 {
		fail(2, "-ns %d: give the run's length in ns (above 0)", *ns)
	}
	var ws []atoms
	for i := 0; *name != "" && i < *procs; i++ {
		w, err := makeWorkload(*name, *size, *image)
		if err != nil {
			fail(2, "%v", err)
		}
		ws = append(ws, w)
	}
	run(ws, intervals, time.Duration(*ns))
}

// The a.out loader of crates/services/src/lab/loader.rs, stage for stage.
const (
	omagic        = 0o407
	header        = 32
	relocSize     = 8
	nlistSize     = 12
	nUndfExt      = 0x01
	relocsPerAtom = 64
	copyPerAtom   = 4096
)

// ksyms is loader::KSYMS; symbol i is at ksymAddr(i).
var ksyms = [...]string{"printk", "kmalloc", "kfree", "schedule", "wake_up", "add_timer", "del_timer", "register_chrdev"}

func ksymAddr(i int) uint32 { return 0xc010_0000 + 0x40*uint32(i) }

type exec struct {
	text, data, bss, syms, trsize, drsize int
	entry                                 uint32
}

const (
	stHeader = iota
	stCopy
	stBss
	stSymbols
	stRelocate
	stDone
)

// loader loads one module from file at base, an atom per atom() call.
type loader struct {
	file        []byte
	ksyms       map[string]uint32
	base        uint32
	e           exec
	image       []byte
	resolved    []uint32
	stage, pos  int // pos: the copy's offset, or the first relocation of the next atom
	relocations uint64
}

func newLoader(file []byte) *loader {
	ks := make(map[string]uint32, len(ksyms))
	for i, n := range ksyms {
		ks[n] = ksymAddr(i)
	}
	return &loader{file: file, ksyms: ks, stage: stHeader}
}

func (l *loader) restart(base uint32) { l.base, l.stage, l.pos = base, stHeader, 0 }

// readAt is MemFile::read_at: len(buf) bytes at off, or an error past the end of the image.
func (l *loader) readAt(off int, buf []byte) error {
	end := off + len(buf)
	if off < 0 || end < off || end > len(l.file) {
		return fmt.Errorf("read of %d bytes at %d past the end of the image", len(buf), off)
	}
	copy(buf, l.file[off:end])
	return nil
}

// atom runs one atom of the load; false when the module is loaded.
func (l *loader) atom() (bool, error) {
	var err error
	switch l.stage {
	case stHeader:
		err = l.readHeader()
	case stCopy:
		err = l.copySegments()
	case stBss:
		clear0(l.image[l.e.text+l.e.data:])
		l.stage = stSymbols
	case stSymbols:
		err = l.resolveSymbols()
	case stRelocate:
		err = l.relocate()
	}
	return l.stage != stDone, err
}

func clear0(b []byte) {
	for i := range b {
		b[i] = 0
	}
}

func (l *loader) readHeader() error {
	var h [header]byte
	if err := l.readAt(0, h[:]); err != nil {
		return err
	}
	w := func(i int) uint32 { return le32(h[4*i:]) }
	if w(0)&0xffff != omagic {
		return fmt.Errorf("bad magic %#o: not an OMAGIC a.out object", w(0)&0xffff)
	}
	e := exec{text: int(w(1)), data: int(w(2)), bss: int(w(3)), syms: int(w(4)), entry: w(5), trsize: int(w(6)), drsize: int(w(7))}
	need := header + e.text + e.data + e.trsize + e.drsize + e.syms
	if need > len(l.file) || e.trsize%relocSize != 0 || e.drsize%relocSize != 0 || e.syms%nlistSize != 0 {
		return fmt.Errorf("header describes %d bytes of tables; the image has %d", need, len(l.file))
	}
	n := e.text + e.data + e.bss
	if cap(l.image) >= n {
		l.image = l.image[:n]
		clear0(l.image)
	} else {
		l.image = make([]byte, n)
	}
	l.e, l.stage, l.pos = e, stCopy, 0
	return nil
}

func (l *loader) copySegments() error {
	segs := l.e.text + l.e.data
	end := l.pos + copyPerAtom
	if end > segs {
		end = segs
	}
	if err := l.readAt(header+l.pos, l.image[l.pos:end]); err != nil {
		return err
	}
	if l.pos = end; end == segs {
		l.stage = stBss
	}
	return nil
}

func (l *loader) resolveSymbols() error {
	e := l.e
	symoff := header + e.text + e.data + e.trsize + e.drsize
	syms := make([]byte, e.syms)
	if err := l.readAt(symoff, syms); err != nil {
		return err
	}
	var size [4]byte
	if err := l.readAt(symoff+e.syms, size[:]); err != nil {
		return err
	}
	strs := make([]byte, le32(size[:]))
	if err := l.readAt(symoff+e.syms, strs); err != nil {
		return err
	}
	l.resolved = l.resolved[:0]
	for off := 0; off+nlistSize <= len(syms); off += nlistSize {
		s := syms[off : off+nlistSize]
		var name []byte
		if strx := int(le32(s)); strx <= len(strs) {
			name = strs[strx:]
			for i, b := range name {
				if b == 0 {
					name = name[:i]
					break
				}
			}
		}
		value := le32(s[8:]) + l.base
		if s[4] == nUndfExt {
			v, ok := l.ksyms[string(name)]
			if !ok || !utf8.Valid(name) {
				return fmt.Errorf("unknown symbol '%s'", utf8Name(name))
			}
			value = v
		}
		l.resolved = append(l.resolved, value)
	}
	l.stage, l.pos = stRelocate, 0
	return nil
}

// relocate applies relocations pos..pos+64 of the text table followed by the data table.
func (l *loader) relocate() error {
	e := l.e
	nt, nd := e.trsize/relocSize, e.drsize/relocSize
	first, last := l.pos, l.pos+relocsPerAtom
	if last > nt+nd {
		last = nt + nd
	}
	var buf [relocsPerAtom * relocSize]byte
	table := buf[:(last-first)*relocSize]
	// the two tables are contiguous in the file
	if err := l.readAt(header+e.text+e.data+first*relocSize, table); err != nil {
		return err
	}
	for k := 0; k < last-first; k++ {
		r := table[k*relocSize:]
		if err := l.apply(int(le32(r)), le32(r[4:]), first+k >= nt); err != nil {
			return err
		}
	}
	l.relocations += uint64(last - first)
	if l.pos = last; last == nt+nd {
		l.stage = stDone
	}
	return nil
}

func (l *loader) apply(addr int, info uint32, inData bool) error {
	segLo, segLen := 0, l.e.text
	if inData {
		segLo, segLen = l.e.text, l.e.data
	}
	if addr+4 > segLen || (info>>25)&3 != 2 {
		return fmt.Errorf("relocation at %#x is outside its segment or not 4 bytes", addr)
	}
	at := segLo + addr
	symnum, pcrel, ext := info&0xff_ffff, info>>24&1 == 1, info>>27&1 == 1
	target := l.base
	if ext {
		if int(symnum) >= len(l.resolved) {
			return fmt.Errorf("relocation names symbol %d", symnum)
		}
		target = l.resolved[symnum]
	}
	word := le32(l.image[at:]) + target
	if pcrel {
		word -= l.base + uint32(at)
	}
	binary.LittleEndian.PutUint32(l.image[at:], word)
	return nil
}

// utf8Name is the Rust loader's `from_utf8(name).unwrap_or("?")`.
func utf8Name(b []byte) string {
	if !utf8.Valid(b) {
		return "?"
	}
	return string(b)
}
