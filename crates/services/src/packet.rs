//! A packet device with a bottom half: a network card's receive path, NAPI style.
//!
//! **Mechanism.** The device's host thread plays the wire and the card's DMA: it writes each
//! packet (sequence number, length, Internet checksum, payload) into a receive ring of fixed,
//! preallocated slots and raises the device's interrupt. The hard IRQ handler only counts and
//! raises `NET_RX_SOFTIRQ` (`napi_schedule`). The softirq (`net_rx_action`) takes up to
//! `napi_budget` packets from the ring, verifies each checksum, copies the packet into a socket
//! queue and wakes the reader; if packets remain it raises `NET_RX_SOFTIRQ` again, so a storm
//! runs into `MAX_SOFTIRQ_RESTART` at `irq_exit` and the rest goes to `ksoftirqd`. One reader
//! task takes packets with [`PacketDevice::recv`], which checks their order.
//!
//! **Invariant.** Every packet sent is delivered to the reader exactly once and in order:
//! neither ring ever overwrites (the wire waits for room, as link-level flow control does, sleeping so as not to take a
//! host core from the CPU thread; the
//! softirq stops when the socket queue is full and the reader raises `NET_RX_SOFTIRQ` again when
//! it has emptied half of it). Nothing on the interrupt or softirq path allocates: the rings are
//! allocated when the device is opened.

use kernel::device::{Device, DeviceRaiser};
use kernel::softirq::{self, NET_RX_SOFTIRQ};
use kernel::sync::IrqSpinLock;
use kernel::WaitQueue;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// How long the wire sleeps when it finds the receive ring full.
const WIRE_BACKOFF_US: u64 = 50;

/// Largest payload a slot holds, in bytes.
pub const MAX_PAYLOAD: usize = 2048;
const MAX_WORDS: usize = MAX_PAYLOAD / 8;

/// How the device and its receive path are set up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PacketConfig {
    /// Payload bytes per packet: a multiple of 8, 8..=2048.
    pub payload_bytes: usize,
    /// Slots of the receive ring (a power of two, 2..=65536).
    pub ring_slots: usize,
    /// Slots of the socket queue (a power of two, 2..=65536).
    pub socket_slots: usize,
    /// Packets one `NET_RX_SOFTIRQ` run takes from the ring (NAPI's weight; Linux uses 64).
    pub napi_budget: usize,
    /// Nanoseconds the wire waits between packets (0: as fast as the ring takes them).
    pub gap_ns: u64,
    /// Packets to send; `None` until [`PacketDevice::stop_wire`].
    pub packets: Option<u64>,
}

impl Default for PacketConfig {
    fn default() -> Self {
        PacketConfig {
            payload_bytes: 1024,
            ring_slots: 256,
            socket_slots: 1024,
            napi_budget: 64,
            gap_ns: 0,
            packets: None,
        }
    }
}

impl PacketConfig {
    /// Checks every field; the error names the field, the value and what to use.
    pub fn validate(&self) -> Result<(), String> {
        if self.payload_bytes == 0 || !self.payload_bytes.is_multiple_of(8) || self.payload_bytes > MAX_PAYLOAD {
            return Err(format!("payload_bytes={}: use a multiple of 8 from 8 to {MAX_PAYLOAD}", self.payload_bytes));
        }
        for (name, v) in [("ring_slots", self.ring_slots), ("socket_slots", self.socket_slots)] {
            if !v.is_power_of_two() || !(2..=65536).contains(&v) {
                return Err(format!("{name}={v}: use a power of two from 2 to 65536"));
            }
        }
        if !(1..=4096).contains(&self.napi_budget) {
            return Err(format!("napi_budget={}: use 1..=4096 (Linux uses 64)", self.napi_budget));
        }
        Ok(())
    }
}

/// One slot of a ring: a packet's header and payload words.
struct Slot {
    seq: AtomicU64,
    len: AtomicU32,
    csum: AtomicU32,
    words: Box<[AtomicU64]>,
}

/// A single-producer, single-consumer ring of preallocated slots.
struct Ring {
    slots: Box<[Slot]>,
    head: AtomicU64,
    tail: AtomicU64,
}

impl Ring {
    fn new(slots: usize, words: usize) -> Ring {
        let slot = |_| Slot {
            seq: AtomicU64::new(0),
            len: AtomicU32::new(0),
            csum: AtomicU32::new(0),
            words: (0..words).map(|_| AtomicU64::new(0)).collect(),
        };
        Ring { slots: (0..slots).map(slot).collect(), head: AtomicU64::new(0), tail: AtomicU64::new(0) }
    }

    fn len(&self) -> u64 {
        self.head.load(Ordering::Acquire) - self.tail.load(Ordering::Acquire)
    }

    fn is_full(&self) -> bool {
        self.len() >= self.slots.len() as u64
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Producer only: fills the next slot with `fill`; false if the ring is full.
    fn push(&self, fill: impl FnOnce(&Slot)) -> bool {
        let head = self.head.load(Ordering::Relaxed);
        if head - self.tail.load(Ordering::Acquire) >= self.slots.len() as u64 {
            return false;
        }
        fill(&self.slots[head as usize & (self.slots.len() - 1)]);
        self.head.store(head + 1, Ordering::Release);
        true
    }

    /// Consumer only: reads the oldest slot with `read` and frees it.
    fn pop<R>(&self, read: impl FnOnce(&Slot) -> R) -> Option<R> {
        let tail = self.tail.load(Ordering::Relaxed);
        if self.head.load(Ordering::Acquire) == tail {
            return None;
        }
        let r = read(&self.slots[tail as usize & (self.slots.len() - 1)]);
        self.tail.store(tail + 1, Ordering::Release);
        Some(r)
    }
}

/// The Internet checksum (RFC 1071) of `words`: the ones' complement of the ones' complement
/// sum (summing 32-bit halves and folding gives the same result as 16-bit words).
pub fn inet_csum(words: &[u64]) -> u16 {
    let mut s: u64 = words.iter().map(|w| (w & 0xffff_ffff) + (w >> 32)).sum();
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// The payload of packet `seq`: word `i` is a mix of both (so a swapped or stale slot fails
/// its checksum or its sequence check).
fn payload_word(seq: u64, i: usize) -> u64 {
    let mut z = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(i as u64);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z ^ (z >> 31)
}

/// Counters of a packet device (read with [`PacketDevice::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PacketStats {
    /// Packets the wire put in the receive ring.
    pub sent: u64,
    /// Packets the softirq checked and queued for the reader.
    pub delivered: u64,
    /// Packets the reader took.
    pub received: u64,
    /// Packets the reader took out of order (a loss or a duplicate); 0 when correct.
    pub out_of_order: u64,
    /// Packets dropped for a bad checksum; 0 when correct.
    pub csum_errors: u64,
    /// Hard interrupts taken.
    pub irqs: u64,
    /// `NET_RX_SOFTIRQ` runs.
    pub softirq_runs: u64,
    /// Times the wire found the receive ring full and waited.
    pub wire_stalls: u64,
    /// Times the softirq found the socket queue full and left packets in the ring.
    pub throttles: u64,
    /// `NET_RX_SOFTIRQ` runs on the time of the watched task ([`PacketDevice::watch`]): at
    /// the `irq_exit` of an interrupt that came while it ran.
    pub runs_on_watched: u64,
    /// Packets those runs processed.
    pub packets_on_watched: u64,
}

/// A received packet's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    pub seq: u64,
    pub len: usize,
    pub csum: u16,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    delivered: AtomicU64,
    received: AtomicU64,
    out_of_order: AtomicU64,
    csum_errors: AtomicU64,
    irqs: AtomicU64,
    softirq_runs: AtomicU64,
    wire_stalls: AtomicU64,
    throttles: AtomicU64,
    runs_on_watched: AtomicU64,
    packets_on_watched: AtomicU64,
}

struct Shared {
    cfg: PacketConfig,
    rx: Ring,
    sock: Ring,
    sock_wq: WaitQueue,
    throttled: AtomicBool,
    stop: AtomicBool,
    wire_done: AtomicBool,
    next_expected: AtomicU64,
    /// The watched task's pid + 1 (0: none).
    watched: AtomicU64,
    c: Counters,
    /// `NAPI_STATE_SCHED`: a CPU is polling the ring (at most one: the rings have one consumer).
    polling: AtomicBool,
    /// A poll was asked for while another CPU polled: the poller polls again.
    poll_again: AtomicBool,
}

/// A packet device registered on the running kernel, with its `NET_RX_SOFTIRQ` receive path.
pub struct PacketDevice {
    shared: Arc<Shared>,
    dev: Device,
    wire: IrqSpinLock<Option<JoinHandle<()>>>,
}

impl PacketDevice {
    /// Registers the device's interrupt and opens `NET_RX_SOFTIRQ` for it. Call from a task;
    /// one packet device per kernel (the vector has one action).
    pub fn open(cfg: PacketConfig) -> Result<PacketDevice, String> {
        cfg.validate()?;
        let words = cfg.payload_bytes / 8;
        let shared = Arc::new(Shared {
            rx: Ring::new(cfg.ring_slots, words),
            sock: Ring::new(cfg.socket_slots, words),
            sock_wq: WaitQueue::new(),
            throttled: AtomicBool::new(false),
            polling: AtomicBool::new(false),
            poll_again: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            wire_done: AtomicBool::new(false),
            next_expected: AtomicU64::new(0),
            watched: AtomicU64::new(0),
            c: Counters::default(),
            cfg,
        });
        let sh = shared.clone();
        softirq::open_softirq(NET_RX_SOFTIRQ, move || net_rx_action(&sh))
            .map_err(|e| format!("packet device: {e} (one packet device per kernel)"))?;
        let sh = shared.clone();
        let dev = Device::register_raised_on(kernel::raw_smp_processor_id(), "packet", move || {
            sh.c.irqs.fetch_add(1, Ordering::Relaxed);
            softirq::raise_softirq(NET_RX_SOFTIRQ); // napi_schedule
        });
        Ok(PacketDevice { shared, dev, wire: IrqSpinLock::new(None) })
    }

    /// Starts the wire: its host thread sends packets until `packets` are sent or
    /// [`Self::stop_wire`]. Once only.
    pub fn start(&self) {
        if self.wire.lock().is_some() || self.shared.wire_done.load(Ordering::Acquire) {
            return;
        }
        let (sh, raiser) = (self.shared.clone(), self.dev.raiser());
        let wire = std::thread::Builder::new()
            .name("packet-wire".into())
            .spawn(move || wire(&sh, &raiser))
            .expect("cannot start the packet wire thread");
        *self.wire.lock() = Some(wire);
    }

    /// Stops the wire and waits for its thread; packets already sent are still delivered.
    pub fn stop_wire(&self) {
        self.shared.stop.store(true, Ordering::Release);
        let wire = self.wire.lock().take();
        if let Some(w) = wire {
            let _ = w.join();
        }
    }

    /// Takes the next packet, sleeping until one arrives; `None` once the wire has finished and
    /// every packet it sent has been received. One reader only. Checks the packet's order.
    pub fn recv(&self) -> Option<Received> {
        loop {
            if let Some(p) = self.try_recv() {
                return Some(p);
            }
            if !self.wait_readable() {
                return None;
            }
        }
    }

    /// Takes the next packet if the socket queue holds one; never sleeps (`MSG_DONTWAIT`). One
    /// reader only. Checks the packet's order.
    pub(crate) fn try_recv(&self) -> Option<Received> {
        let sh = &*self.shared;
        let p = sh.sock.pop(read_packet)?;
        sh.c.received.fetch_add(1, Ordering::AcqRel);
        if sh.next_expected.swap(p.seq + 1, Ordering::AcqRel) != p.seq {
            sh.c.out_of_order.fetch_add(1, Ordering::Relaxed);
        }
        sh.unthrottle();
        Some(p)
    }

    /// Sleeps until the socket queue holds a packet (true) or the wire has finished and every
    /// packet it sent has been received (false).
    pub(crate) fn wait_readable(&self) -> bool {
        let sh = &*self.shared;
        sh.sock_wq.wait_event(|| !sh.sock.is_empty() || sh.finished());
        !sh.sock.is_empty()
    }

    /// The device's counters so far.
    pub fn stats(&self) -> PacketStats {
        let c = &self.shared.c;
        let r = |a: &AtomicU64| a.load(Ordering::Acquire);
        PacketStats {
            sent: r(&c.sent),
            delivered: r(&c.delivered),
            received: r(&c.received),
            out_of_order: r(&c.out_of_order),
            csum_errors: r(&c.csum_errors),
            irqs: r(&c.irqs),
            softirq_runs: r(&c.softirq_runs),
            wire_stalls: r(&c.wire_stalls),
            throttles: r(&c.throttles),
            runs_on_watched: r(&c.runs_on_watched),
            packets_on_watched: r(&c.packets_on_watched),
        }
    }

    /// Counts the receive work done on task `pid`'s time (an RT task's, to see bottom halves
    /// run ahead of it): see [`PacketStats::runs_on_watched`].
    pub fn watch(&self, pid: kernel::TaskId) {
        self.shared.watched.store(pid as u64 + 1, Ordering::Release);
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &PacketConfig {
        &self.shared.cfg
    }
}

impl Drop for PacketDevice {
    fn drop(&mut self) {
        self.stop_wire();
    }
}

impl Shared {
    /// Half empty again after a throttle: raise the softirq, served at the BH enable (or by
    /// `ksoftirqd`). Waiting for half, not one slot, keeps the softirq and the reader from
    /// switching once per packet.
    fn unthrottle(&self) {
        let half = self.cfg.socket_slots as u64 / 2;
        if self.sock.len() > half || !self.throttled.swap(false, Ordering::AcqRel) {
            return;
        }
        let kick = || {
            let _bh = softirq::local_bh_disable();
            softirq::raise_softirq(NET_RX_SOFTIRQ);
        };
        if kernel::syscall::in_kernel_mode() {
            kick();
        } else {
            kernel::syscall(kick);
        }
    }

    /// The wire has finished and the reader has taken everything it sent.
    fn finished(&self) -> bool {
        self.wire_done.load(Ordering::Acquire)
            && self.c.received.load(Ordering::Acquire) == self.c.sent.load(Ordering::Acquire)
    }
}

fn read_packet(slot: &Slot) -> Received {
    let len = slot.len.load(Ordering::Relaxed) as usize;
    let mut acc = 0u64;
    for w in &slot.words[..len / 8] {
        acc ^= w.load(Ordering::Relaxed); // the reader touches the data it copies out
    }
    std::hint::black_box(acc);
    Received { seq: slot.seq.load(Ordering::Relaxed), len, csum: slot.csum.load(Ordering::Relaxed) as u16 }
}

/// The wire (host thread): sends packets into the receive ring and raises the interrupt;
/// sleeps while the ring is full.
fn wire(sh: &Shared, raiser: &DeviceRaiser) {
    let words = sh.cfg.payload_bytes / 8;
    let mut buf = [0u64; MAX_WORDS];
    let mut seq = 0u64;
    'wire: while !sh.stop.load(Ordering::Acquire) && sh.cfg.packets.is_none_or(|n| seq < n) {
        for (i, w) in buf[..words].iter_mut().enumerate() {
            *w = payload_word(seq, i);
        }
        let csum = inet_csum(&buf[..words]);
        let mut stalled = false;
        while !sh.rx.push(|s| fill_slot(s, seq, &buf[..words], csum)) {
            if !stalled {
                sh.c.wire_stalls.fetch_add(1, Ordering::Relaxed);
                stalled = true;
                raiser.raise();
            }
            if sh.stop.load(Ordering::Acquire) {
                break 'wire; // stopped while waiting: this packet was never sent
            }
            // Give the host CPU back while the ring drains (a full ring holds hundreds of
            // microseconds of work): a spinning wire would take a core from the kernel's CPU
            // thread on a small host, and the measurement would be of the host's scheduler.
            std::thread::sleep(std::time::Duration::from_micros(WIRE_BACKOFF_US));
        }
        sh.c.sent.fetch_add(1, Ordering::AcqRel);
        seq += 1;
        raiser.raise();
        if sh.cfg.gap_ns > 0 {
            let until = kernel::time::now_ns() + sh.cfg.gap_ns;
            while kernel::time::now_ns() < until {
                std::hint::spin_loop();
            }
        }
    }
    sh.wire_done.store(true, Ordering::Release);
    raiser.raise(); // the softirq wakes the reader, which sees the wire has finished
}

fn fill_slot(s: &Slot, seq: u64, words: &[u64], csum: u16) {
    s.seq.store(seq, Ordering::Relaxed);
    s.len.store((words.len() * 8) as u32, Ordering::Relaxed);
    s.csum.store(csum as u32, Ordering::Relaxed);
    for (d, &w) in s.words.iter().zip(words) {
        d.store(w, Ordering::Relaxed);
    }
}

/// `NET_RX_SOFTIRQ`'s action (`net_rx_action` with one NAPI instance): up to `napi_budget`
/// packets from the receive ring, each checksummed and copied to the socket queue.
/// `net_rx_action`: polls the ring on one CPU at a time (`NAPI_STATE_SCHED`). The softirq may
/// be raised on two CPUs at once (the interrupt's, and the reader's after a throttle); the
/// second asks the first to poll again instead of consuming the ring beside it.
fn net_rx_action(sh: &Shared) {
    sh.poll_again.store(true, Ordering::SeqCst);
    while sh.poll_again.load(Ordering::SeqCst) {
        if sh.polling.swap(true, Ordering::SeqCst) {
            return; // the poller sees `poll_again` once it is done
        }
        sh.poll_again.store(false, Ordering::SeqCst);
        net_rx_poll(sh);
        sh.polling.store(false, Ordering::SeqCst);
    }
}

fn net_rx_poll(sh: &Shared) {
    sh.c.softirq_runs.fetch_add(1, Ordering::Relaxed);
    let mut buf = [0u64; MAX_WORDS];
    let mut done = 0;
    while done < sh.cfg.napi_budget {
        if sh.sock.is_full() {
            sh.c.throttles.fetch_add(1, Ordering::Relaxed);
            sh.throttled.store(true, Ordering::Release);
            break;
        }
        let Some((seq, n, csum)) = sh.rx.pop(|s| copy_in(s, &mut buf)) else { break };
        done += 1;
        if inet_csum(&buf[..n]) != csum {
            sh.c.csum_errors.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        sh.sock.push(|s| fill_slot(s, seq, &buf[..n], csum));
        sh.c.delivered.fetch_add(1, Ordering::Relaxed);
    }
    let watched = sh.watched.load(Ordering::Acquire);
    if watched != 0 && kernel::current_pid() as u64 + 1 == watched {
        sh.c.runs_on_watched.fetch_add(1, Ordering::Relaxed);
        sh.c.packets_on_watched.fetch_add(done as u64, Ordering::Relaxed);
    }
    if done == sh.cfg.napi_budget && !sh.rx.is_empty() {
        softirq::raise_softirq(NET_RX_SOFTIRQ); // budget used up: poll again later
    }
    sh.sock_wq.wake_up();
}

fn copy_in(s: &Slot, buf: &mut [u64; MAX_WORDS]) -> (u64, usize, u16) {
    let n = s.len.load(Ordering::Relaxed) as usize / 8;
    for (d, w) in buf[..n].iter_mut().zip(s.words.iter()) {
        *d = w.load(Ordering::Relaxed);
    }
    (s.seq.load(Ordering::Relaxed), n, s.csum.load(Ordering::Relaxed) as u16)
}
