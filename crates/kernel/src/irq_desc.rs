//! The interrupt lines and their handlers (Linux's `irq_desc` array): which line is the tick,
//! the IPIs and the devices, and each device line's handler.
//!
//! **Mechanism.** The core's own lines come first ([`LINE_TICK`] .. [`LINE_CALL_FUNCTION`]);
//! devices take free lines from [`FIRST_DEVICE_LINE`] on ([`IrqDescs::request`]). The
//! interrupt hook runs a device line's handler through [`IrqDescs::handle`].
//!
//! **Invariant.** A handler is never freed in interrupt context: each line counts the CPUs
//! running its handler (`IRQD_IRQ_INPROGRESS`), and [`IrqDescs::free`] takes the handler out of
//! the table, then waits until no CPU runs it (`synchronize_irq`), then drops it, in task
//! context, as the last owner.

use crate::arch::{Arch, IrqSpinLock, A};
use alloc::sync::Arc;
use alloc::{vec, vec::Vec};
use core::sync::atomic::{AtomicU32, Ordering};

/// The periodic tick.
pub(crate) const LINE_TICK: u32 = 0;
/// One-shot high-resolution timers.
pub(crate) const LINE_HRTIMER: u32 = 1;
/// The preemption retry: armed when a preemption was due but the interrupt landed in foreign
/// code, so the next look comes soon rather than at the next tick.
pub(crate) const LINE_RETRY: u32 = 2;
/// The reschedule IPI (`smp::ipi::smp_send_reschedule`).
pub(crate) const LINE_RESCHED: u32 = 3;
/// The function-call IPI (`smp::smp_call_function_many`).
pub(crate) const LINE_CALL_FUNCTION: u32 = 4;
/// The first line available to devices.
pub(crate) const FIRST_DEVICE_LINE: u32 = 5;
/// A device's interrupt handler.
pub(crate) type IrqHandler = Arc<dyn Fn() + Send + Sync>;

/// Number of interrupt lines (one bit each in the IRR).
const NR_LINES: usize = 64;

/// The device lines (Linux's `irq_desc` array): each line's handler and how many CPUs are
/// inside it right now.
pub(crate) struct IrqDescs {
    handlers: IrqSpinLock<Vec<Option<IrqHandler>>>,
    in_progress: [AtomicU32; NR_LINES],
}

impl IrqDescs {
    /// Every line free.
    pub(crate) fn new() -> IrqDescs {
        IrqDescs {
            handlers: IrqSpinLock::new(vec![None; NR_LINES]),
            in_progress: [const { AtomicU32::new(0) }; NR_LINES],
        }
    }

    /// Runs `line`'s handler, if it has one (`handle_irq_event`). The handler is taken and
    /// counted in progress under the table's lock, and its reference dropped before the count
    /// is, so the one [`IrqDescs::free`] holds is always the last.
    pub(crate) fn handle(&self, line: usize) {
        let handler = {
            let table = self.handlers.lock();
            let h = table[line].clone();
            if h.is_some() {
                self.in_progress[line].fetch_add(1, Ordering::AcqRel);
            }
            h
        };
        if let Some(h) = handler {
            h();
            drop(h);
            self.in_progress[line].fetch_sub(1, Ordering::Release);
        }
    }

    /// Installs `handler` for a free device line and returns the line (`request_irq`).
    pub(crate) fn request(&self, handler: IrqHandler) -> Option<u32> {
        let mut table = self.handlers.lock();
        let line = (FIRST_DEVICE_LINE as usize..table.len()).find(|&l| table[l].is_none())?;
        table[line] = Some(handler);
        Some(line as u32)
    }

    /// Removes the handler of `line` (`free_irq`): no CPU starts it any more, and once none
    /// runs it (`synchronize_irq`) it is dropped here. Call from a task. `false` if a CPU still
    /// ran it after 2 s: it is then never freed (the caller reports the `BUG:`).
    pub(crate) fn free(&self, line: u32) -> bool {
        let line = line as usize;
        let handler = self.handlers.lock()[line].take();
        let (t0, mut spins) = (A::now_ns(), 0);
        while self.in_progress[line].load(Ordering::Acquire) != 0 {
            if A::now_ns() - t0 > SYNCHRONIZE_PATIENCE_NS {
                core::mem::forget(handler); // a CPU may still be inside it: never free it under it
                return false;
            }
            A::cpu_relax(&mut spins);
        }
        drop(handler);
        true
    }
}

/// Longest [`IrqDescs::free`] waits for a line's handler to finish on another CPU.
const SYNCHRONIZE_PATIENCE_NS: u64 = 2_000_000_000;
