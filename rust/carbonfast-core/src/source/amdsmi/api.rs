//! The part of AMD SMI's C ABI that carbonfast calls (include/amd_smi/amdsmi.h), loaded at run
//! time, and one process-wide session per library: AMD SMI is initialised once and shut down
//! when the last source using it is dropped, so that two meters in one process never shut the
//! library down under each other's feet.

use crate::error::Error;
use crate::source::vendor::{self, MAX_DEVICES};
use crate::source::MAX_PROCESSES;
use libloading::Library;
use std::ffi::{c_char, c_uint, c_void, CStr};
use std::mem::ManuallyDrop;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

/// amdsmi_status_t. Its values run up to 0xFFFFFFFF, so the enum is an unsigned int.
pub type Status = u32;
/// amdsmi_socket_handle and amdsmi_processor_handle: opaque pointers.
pub type Handle = *mut c_void;

pub const SUCCESS: Status = 0;
pub const NOT_SUPPORTED: Status = 2;
pub const NOT_YET_IMPLEMENTED: Status = 3;
pub const NO_PERM: Status = 10;
/// AMDSMI_STATUS_OUT_OF_RESOURCES: a list longer than the room given (what fits is written).
pub const OUT_OF_RESOURCES: Status = 15;
/// AMDSMI_STATUS_DRIVER_NOT_LOADED: no amdgpu driver (ROCm 6.1 and later).
pub const DRIVER_NOT_LOADED: Status = 34;

/// AMDSMI_INIT_AMD_GPUS: GPUs only (the CPU part needs the HSMP driver, and is not measured
/// here).
const INIT_AMD_GPUS: u64 = 1 << 1;
/// AMDSMI_PROCESSOR_TYPE_AMD_GPU in processor_type_t (an int-sized enum).
pub const PROCESSOR_TYPE_AMD_GPU: u32 = 1;

/// Out-buffers for structs whose size grew across ROCm releases are this many bytes, zeroed:
/// larger than any release's struct (amdsmi_asic_info_t, the largest read here, is under 1 KiB
/// in ROCm 7), so an older or newer library never writes past them, and a field a release does
/// not fill reads as 0.
const STRUCT_BUFFER: usize = 4096;

type Buffer = [u64; STRUCT_BUFFER / 8];

fn u32_at(buf: &Buffer, offset: usize) -> u32 {
    let bytes: &[u8] = as_bytes(buf);
    u32::from_ne_bytes(bytes[offset..offset + 4].try_into().unwrap())
}

fn u64_at(buf: &Buffer, offset: usize) -> u64 {
    let bytes: &[u8] = as_bytes(buf);
    u64::from_ne_bytes(bytes[offset..offset + 8].try_into().unwrap())
}

fn as_bytes(buf: &Buffer) -> &[u8] {
    // SAFETY: u64s are plain bytes; the slice covers exactly the array.
    unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), STRUCT_BUFFER) }
}

/// A C string at the start of `buf` (a struct whose first member is a char array of `max`).
fn str_at_start(buf: &Buffer, max: usize) -> String {
    vendor::text(&as_bytes(buf)[..max])
}

/// How amdsmi_power_info_t lays out the socket power, which changed between releases:
/// - ROCm 6.0-6.3 (library 23.x/24.x): `uint32_t current_socket_power; uint32_t
///   average_socket_power; ...` (current for MI300, average for Navi and MI200);
/// - ROCm 6.4 (25.x): `uint64_t socket_power` (host only) first, then the two 32-bit fields
///   at bytes 8 and 12;
/// - ROCm 7 (26.x and later): as 6.4, with `socket_power` filled on bare metal too, in watts.
///
/// No offset holds the same field in all of them, so the layout is chosen by the library's own
/// version (amdsmi_get_lib_version), and a library whose layout is not known here offers no
/// power reading rather than a misread one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerLayout {
    /// current at 0, average at 4.
    Rocm61,
    /// current at 8, average at 12; socket_power not for bare metal.
    Rocm64,
    /// socket_power (u64) at 0, current at 8, average at 12.
    Rocm70,
}

impl PowerLayout {
    /// The layout of a library whose amdsmi_version_t begins with `first` and `second`
    /// (`year, major` up to ROCm 6.3; from ROCm 7 `major, minor`; ROCm 6.4 dropped the year
    /// from the version but may still leave the member, zero, in front).
    pub fn from_version(first: u32, second: u32) -> Option<PowerLayout> {
        let generation = if first == 0 { second } else { first };
        match generation {
            // 23.x spans ROCm 5.7 (average at 0, voltages after) and 6.0: not told apart.
            24 => Some(PowerLayout::Rocm61),
            25 => Some(PowerLayout::Rocm64),
            26.. => Some(PowerLayout::Rocm70),
            _ => None,
        }
    }

    /// The fields that may hold the socket power in watts, best first: (offset, width).
    fn candidates(self) -> &'static [(usize, usize)] {
        match self {
            PowerLayout::Rocm61 => &[(0, 4), (4, 4)],
            PowerLayout::Rocm64 => &[(8, 4), (12, 4)],
            PowerLayout::Rocm70 => &[(0, 8), (8, 4), (12, 4)],
        }
    }
}

/// Which field of amdsmi_power_info_t a GPU reports its power in: chosen once, at discovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PowerField {
    offset: usize,
    width: usize,
}

impl PowerField {
    fn read(self, buf: &Buffer) -> Option<u64> {
        let v = if self.width == 8 {
            u64_at(buf, self.offset)
        } else {
            u64::from(u32_at(buf, self.offset))
        };
        // Unsupported members are all ones (UINT32_MAX, or UINT64_MAX in a 64-bit one).
        (v != u64::from(u32::MAX) && v != u64::MAX).then_some(v)
    }
}

/// amdsmi_proc_info_t from library 25 (ROCm 6.4) on: `char name[256]; uint32_t pid; uint64_t
/// mem; struct { uint64_t gfx, enc; uint32_t reserved[12]; } engine_usage; struct { uint64_t
/// gtt_mem, cpu_mem, vram_mem; uint32_t reserved[10]; } memory_usage; char
/// container_name[256]; uint32_t cu_occupancy, evicted_time, reserved[10];`, 704 bytes. Earlier
/// releases sized the names otherwise (32 bytes in ROCm 6.0-6.1), so their lists are not read.
const PROC_INFO_SIZE: usize = 704;
const PROC_PID: usize = 256;
/// engine_usage.gfx: nanoseconds the process has kept the GFX (compute) engine busy.
const PROC_GFX_NS: usize = 272;

/// A process on a GPU as amdsmi_get_gpu_process_list lists it.
pub struct GpuProcess {
    pub pid: u32,
    /// Nanoseconds its work has kept the GFX engine busy, since it started.
    pub gfx_ns: u64,
}

/// A GPU's energy counter, as amdsmi_get_energy_count gives it.
pub struct Energy {
    pub count: u64,
    /// Microjoules per count (15.259, 2^-16 J, on MI200 and MI300; 15.3 from older libraries).
    pub resolution_uj: f32,
}

/// The AMD SMI entry points carbonfast uses. Optional ones are missing from some releases.
pub struct Api {
    init: unsafe extern "C" fn(u64) -> Status,
    shut_down: unsafe extern "C" fn() -> Status,
    socket_handles: unsafe extern "C" fn(*mut u32, *mut Handle) -> Status,
    processor_handles: unsafe extern "C" fn(Handle, *mut u32, *mut Handle) -> Status,
    processor_type: Option<unsafe extern "C" fn(Handle, *mut u32) -> Status>,
    bdf: Option<unsafe extern "C" fn(Handle, *mut u64) -> Status>,
    uuid: Option<unsafe extern "C" fn(Handle, *mut c_uint, *mut c_char) -> Status>,
    asic_info: Option<unsafe extern "C" fn(Handle, *mut c_void) -> Status>,
    energy_count: Option<unsafe extern "C" fn(Handle, *mut u64, *mut f32, *mut u64) -> Status>,
    power_info: Option<unsafe extern "C" fn(Handle, *mut c_void) -> Status>,
    power_cap_info: Option<unsafe extern "C" fn(Handle, u32, *mut c_void) -> Status>,
    lib_version: Option<unsafe extern "C" fn(*mut c_void) -> Status>,
    enumeration: Option<unsafe extern "C" fn(Handle, *mut c_void) -> Status>,
    status_string: Option<unsafe extern "C" fn(Status, *mut *const c_char) -> Status>,
    process_list: Option<unsafe extern "C" fn(Handle, *mut u32, *mut c_void) -> Status>,
    // Last: the function pointers above must not outlive the library.
    _lib: Library,
}

impl Api {
    fn load(path: &Path) -> std::result::Result<Api, String> {
        let lib = vendor::open_library(path)?;
        // SAFETY (for each symbol): the types are those of AMD SMI's public header, amdsmi.h,
        // and the pointers live no longer than `_lib`, dropped last.
        unsafe {
            use vendor::{optional as opt, required as req};
            Ok(Api {
                init: req(&lib, "amdsmi_init")?,
                shut_down: req(&lib, "amdsmi_shut_down")?,
                socket_handles: req(&lib, "amdsmi_get_socket_handles")?,
                processor_handles: req(&lib, "amdsmi_get_processor_handles")?,
                processor_type: opt(&lib, "amdsmi_get_processor_type"),
                bdf: opt(&lib, "amdsmi_get_gpu_device_bdf"),
                uuid: opt(&lib, "amdsmi_get_gpu_device_uuid"),
                asic_info: opt(&lib, "amdsmi_get_gpu_asic_info"),
                energy_count: opt(&lib, "amdsmi_get_energy_count"),
                power_info: opt(&lib, "amdsmi_get_power_info"),
                power_cap_info: opt(&lib, "amdsmi_get_power_cap_info"),
                lib_version: opt(&lib, "amdsmi_get_lib_version"),
                enumeration: opt(&lib, "amdsmi_get_gpu_enumeration_info"),
                status_string: opt(&lib, "amdsmi_status_code_to_string"),
                process_list: opt(&lib, "amdsmi_get_gpu_process_list"),
                _lib: lib,
            })
        }
    }

    /// The status as AMD SMI words it, with its number.
    pub fn describe(&self, rc: Status) -> String {
        let text = self.status_string.and_then(|f| {
            let mut p: *const c_char = std::ptr::null();
            // SAFETY: `p` is writable; AMD SMI points it at a static NUL-terminated string.
            let ok = unsafe { f(rc, &mut p) } == SUCCESS && !p.is_null();
            ok.then(|| vendor::text(unsafe { CStr::from_ptr(p) }.to_bytes()))
        });
        match text {
            Some(t) => format!("{t} (AMD SMI status {rc})"),
            None => format!("AMD SMI status {rc}"),
        }
    }

    /// Every processor handle AMD SMI knows, socket by socket, in its enumeration order. Counts
    /// past what any machine holds are bounded, and noted in `problems` as about `path`.
    pub fn processors(
        &self,
        path: &Path,
        problems: &mut Vec<Error>,
    ) -> std::result::Result<Vec<Handle>, (&'static str, Status)> {
        const LIBRARY: &str = "AMD SMI";
        let mut n: u32 = 0;
        // SAFETY: a null array asks for the count alone.
        let rc = unsafe { (self.socket_handles)(&mut n, std::ptr::null_mut()) };
        if rc != SUCCESS {
            return Err(("amdsmi_get_socket_handles", rc));
        }
        n = vendor::bounded_count(n, LIBRARY, "amdsmi_get_socket_handles", path, problems);
        let mut sockets: Vec<Handle> = vec![std::ptr::null_mut(); n as usize];
        // SAFETY: `sockets` holds `n` writable handles.
        let rc = unsafe { (self.socket_handles)(&mut n, sockets.as_mut_ptr()) };
        if rc != SUCCESS {
            return Err(("amdsmi_get_socket_handles", rc));
        }
        // A count past the array it was given reads nothing more: truncate never grows.
        sockets.truncate(n as usize);
        let mut out = Vec::new();
        for socket in sockets {
            let mut m: u32 = 0;
            // SAFETY: as above, per socket.
            let rc = unsafe { (self.processor_handles)(socket, &mut m, std::ptr::null_mut()) };
            if rc != SUCCESS {
                return Err(("amdsmi_get_processor_handles", rc));
            }
            let call = "amdsmi_get_processor_handles";
            m = vendor::bounded_count(m, LIBRARY, call, path, problems);
            let mut handles: Vec<Handle> = vec![std::ptr::null_mut(); m as usize];
            // SAFETY: `handles` holds `m` writable handles.
            let rc = unsafe { (self.processor_handles)(socket, &mut m, handles.as_mut_ptr()) };
            if rc != SUCCESS {
                return Err(("amdsmi_get_processor_handles", rc));
            }
            handles.truncate(m as usize);
            out.extend(handles);
        }
        if out.len() > MAX_DEVICES as usize {
            let total = u32::try_from(out.len()).unwrap_or(u32::MAX);
            let call = "amdsmi_get_processor_handles (all sockets together)";
            vendor::bounded_count(total, LIBRARY, call, path, problems);
            out.truncate(MAX_DEVICES as usize);
        }
        Ok(out)
    }

    /// Whether the processor is an AMD GPU (libraries without the call only know GPUs here,
    /// since carbonfast initialises AMD SMI for GPUs alone).
    pub fn is_amd_gpu(&self, h: Handle) -> bool {
        let Some(f) = self.processor_type else {
            return true;
        };
        let mut t: u32 = 0;
        // SAFETY: `t` is writable.
        unsafe { f(h, &mut t) == SUCCESS && t == PROCESSOR_TYPE_AMD_GPU }
    }

    /// The PCI address, "0000:03:00.0". amdsmi_bdf_t is a 64-bit union: function in bits 0-2,
    /// device 3-7, bus 8-15, domain 16-63.
    pub fn pci_address(&self, h: Handle) -> Option<String> {
        let f = self.bdf?;
        let mut bdf: u64 = 0;
        // SAFETY: `bdf` is writable and 64 bits, as the union is.
        (unsafe { f(h, &mut bdf) } == SUCCESS).then(|| format_bdf(bdf))
    }

    /// How HIP numbers and names this GPU (amdsmi_get_gpu_enumeration_info, ROCm 6.4 and
    /// later): `{uint32_t drm_render, drm_card, hsa_id, hip_id; char hip_uuid[]}`, the index
    /// and the "GPU-..." UUID that ROCR_VISIBLE_DEVICES and HIP_VISIBLE_DEVICES take.
    pub fn hip_enumeration(&self, h: Handle) -> Option<(u32, String)> {
        let f = self.enumeration?;
        let mut buf: Buffer = [0; STRUCT_BUFFER / 8];
        // SAFETY: `buf` is larger than amdsmi_enumeration_info_t in any release.
        if unsafe { f(h, buf.as_mut_ptr().cast()) } != SUCCESS {
            return None;
        }
        let uuid = vendor::text(&as_bytes(&buf)[16..16 + 256]);
        Some((u32_at(&buf, 12), uuid))
    }

    pub fn uuid(&self, h: Handle) -> String {
        let Some(f) = self.uuid else {
            return String::new();
        };
        let mut buf = [0u8; 128];
        let mut len = buf.len() as c_uint;
        // SAFETY: `buf` is writable for `len` bytes, which is passed. AMD SMI should
        // NUL-terminate the UUID, but it is read within the buffer whether it does or not.
        if unsafe { f(h, &mut len, buf.as_mut_ptr().cast()) } != SUCCESS {
            return String::new();
        }
        vendor::text(&buf)
    }

    /// The marketing name: amdsmi_asic_info_t's first member in every release (char[64], then
    /// char[256] from ROCm 6.1).
    pub fn market_name(&self, h: Handle) -> String {
        let Some(f) = self.asic_info else {
            return String::new();
        };
        let mut buf: Buffer = [0; STRUCT_BUFFER / 8];
        // SAFETY: `buf` is larger than any release's amdsmi_asic_info_t (see STRUCT_BUFFER).
        if unsafe { f(h, buf.as_mut_ptr().cast()) } != SUCCESS {
            return String::new();
        }
        str_at_start(&buf, 256)
    }

    pub fn has_energy(&self) -> bool {
        self.energy_count.is_some()
    }

    /// The energy counter. Hot path: one call, nothing allocated.
    #[inline]
    pub fn energy(&self, h: Handle) -> std::result::Result<Energy, Status> {
        let Some(f) = self.energy_count else {
            return Err(NOT_SUPPORTED);
        };
        let (mut count, mut resolution_uj, mut timestamp) = (0u64, 0f32, 0u64);
        // SAFETY: the three out-pointers are writable and of the header's types.
        match unsafe { f(h, &mut count, &mut resolution_uj, &mut timestamp) } {
            SUCCESS => Ok(Energy {
                count,
                resolution_uj,
            }),
            rc => Err(rc),
        }
    }

    pub fn power_layout(&self) -> Option<PowerLayout> {
        let f = self.lib_version?;
        let mut buf: Buffer = [0; STRUCT_BUFFER / 8];
        // SAFETY: `buf` is larger than any release's amdsmi_version_t.
        if unsafe { f(buf.as_mut_ptr().cast()) } != SUCCESS {
            return None;
        }
        PowerLayout::from_version(u32_at(&buf, 0), u32_at(&buf, 4))
    }

    /// The library's generation: its version's major (see [`PowerLayout::from_version`]).
    fn generation(&self) -> Option<u32> {
        let f = self.lib_version?;
        let mut buf: Buffer = [0; STRUCT_BUFFER / 8];
        // SAFETY: `buf` is larger than any release's amdsmi_version_t.
        if unsafe { f(buf.as_mut_ptr().cast()) } != SUCCESS {
            return None;
        }
        let (first, second) = (u32_at(&buf, 0), u32_at(&buf, 4));
        Some(if first == 0 { second } else { first })
    }

    /// The compute processes on a GPU (amdsmi_get_gpu_process_list), at most MAX_PROCESSES of
    /// them, and whether that is the whole list. None: the call is missing or failed, or the
    /// library's amdsmi_proc_info_t is laid out in a way not known here (before library 25).
    pub fn processes(&self, h: Handle) -> Option<(Vec<GpuProcess>, bool)> {
        let f = self.process_list?;
        if self.generation()? < 25 {
            return None;
        }
        let mut n: u32 = 0;
        // SAFETY: a count of 0 asks for the count alone; nothing is written to the list.
        if unsafe { f(h, &mut n, std::ptr::null_mut()) } != SUCCESS {
            return None;
        }
        let cap = n.min(MAX_PROCESSES);
        if cap == 0 {
            return Some((Vec::new(), true));
        }
        let mut buf: Vec<u64> = vec![0; cap as usize * PROC_INFO_SIZE / 8];
        let mut got = cap;
        // SAFETY: `buf` holds `cap` zeroed amdsmi_proc_info_t of this library's layout, and
        // `cap` is passed: the library writes no more.
        let rc = unsafe { f(h, &mut got, buf.as_mut_ptr().cast()) };
        // NO_PERM: the list is filled, some names could not be read (they are not used).
        if !matches!(rc, SUCCESS | NO_PERM | OUT_OF_RESOURCES) {
            return None;
        }
        let complete = n <= MAX_PROCESSES && rc != OUT_OF_RESOURCES && got <= cap;
        // SAFETY: u64s are plain bytes; the slice covers exactly the buffer.
        let bytes: &[u8] =
            unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), buf.len() * 8) };
        let list = bytes
            .chunks_exact(PROC_INFO_SIZE)
            .take(got.min(cap) as usize)
            .map(|e| GpuProcess {
                pid: u32::from_ne_bytes(e[PROC_PID..PROC_PID + 4].try_into().unwrap()),
                gfx_ns: u64::from_ne_bytes(e[PROC_GFX_NS..PROC_GFX_NS + 8].try_into().unwrap()),
            })
            .collect();
        Some((list, complete))
    }

    /// The first field of `layout` that holds a power for this GPU.
    pub fn find_power_field(
        &self,
        h: Handle,
        layout: PowerLayout,
    ) -> std::result::Result<Option<PowerField>, Status> {
        let buf = self.power_buffer(h)?;
        Ok(layout
            .candidates()
            .iter()
            .map(|&(offset, width)| PowerField { offset, width })
            .find(|f| f.read(&buf).is_some_and(|w| w > 0)))
    }

    /// The socket power in watts, from the field chosen at discovery.
    #[inline]
    pub fn power_w(&self, h: Handle, field: PowerField) -> std::result::Result<u64, Status> {
        let buf = self.power_buffer(h)?;
        field.read(&buf).ok_or(NOT_SUPPORTED)
    }

    fn power_buffer(&self, h: Handle) -> std::result::Result<Buffer, Status> {
        let Some(f) = self.power_info else {
            return Err(NOT_SUPPORTED);
        };
        // A zeroed buffer larger than any release's amdsmi_power_info_t (ROCm 7's is 192
        // bytes): whichever layout the library writes, it stays inside, and what it does not
        // write reads as 0. On the stack: nothing is allocated.
        let mut buf: Buffer = [0; STRUCT_BUFFER / 8];
        // SAFETY: see above.
        match unsafe { f(h, buf.as_mut_ptr().cast()) } {
            SUCCESS => Ok(buf),
            rc => Err(rc),
        }
    }

    /// The power cap in watts (amdsmi_power_cap_info_t.power_cap, microwatts on bare metal,
    /// its first member in every release).
    pub fn power_cap_w(&self, h: Handle) -> Option<f64> {
        let f = self.power_cap_info?;
        let mut buf: Buffer = [0; STRUCT_BUFFER / 8];
        // SAFETY: `buf` is larger than amdsmi_power_cap_info_t (64 bytes).
        if unsafe { f(h, 0, buf.as_mut_ptr().cast()) } != SUCCESS {
            return None;
        }
        let uw = u64_at(&buf, 0);
        (uw > 0 && uw != u64::MAX && uw != u64::from(u32::MAX)).then_some(uw as f64 * 1e-6)
    }
}

/// "dddd:bb:dd.f" from amdsmi_bdf_t's bits.
pub fn format_bdf(bdf: u64) -> String {
    let function = bdf & 0x7;
    let device = (bdf >> 3) & 0x1f;
    let bus = (bdf >> 8) & 0xff;
    let domain = bdf >> 16;
    format!("{domain:04x}:{bus:02x}:{device:02x}.{function:x}")
}

/// An initialised AMD SMI, shared by every source in the process that loaded the same library.
pub struct Session {
    /// Taken out only by `drop`, which hands it to the thread that shuts the library down.
    pub api: ManuallyDrop<Api>,
}

impl Drop for Session {
    fn drop(&mut self) {
        // SAFETY: `api` is taken once, here, and never used again.
        let api = unsafe { ManuallyDrop::take(&mut self.api) };
        // On a thread, waited for a bounded time (see vendor::shut_down): amdsmi_shut_down can
        // block for good on a GPU that stopped answering.
        vendor::shut_down("cf-amdsmi-stop", api, |api| {
            // SAFETY: this session initialised AMD SMI once; this is its one shut-down.
            unsafe { (api.shut_down)() };
        });
    }
}

// SAFETY: AMD SMI handles are opaque identifiers, and the library serialises its own calls;
// the function pointers are plain code addresses.
unsafe impl Send for Session {}
// SAFETY: as above.
unsafe impl Sync for Session {}

/// Why no session could be had.
pub enum OpenError {
    /// The library could not be loaded (missing, not a library, a symbol missing).
    Load(String),
    /// amdsmi_init failed: its status, described.
    Init(Status, String),
}

/// The session of each library path, behind a lock of its own: amdsmi_init can block for good
/// (the caller waits for it under a deadline), and must then hold up only the openings of that
/// same library, never those of another.
type Slot = Arc<Mutex<Weak<Session>>>;

static SESSIONS: Mutex<Vec<(PathBuf, Slot)>> = Mutex::new(Vec::new());

/// The session of the library at `path`, loaded and initialised (for AMD GPUs) on first use.
pub fn open(path: &Path) -> std::result::Result<Arc<Session>, OpenError> {
    let slot = {
        let mut sessions = SESSIONS.lock().unwrap_or_else(|p| p.into_inner());
        // Forget the slots with no session and no opening under way.
        sessions.retain(|(_, slot)| match slot.try_lock() {
            Ok(s) => s.strong_count() > 0,
            Err(_) => true,
        });
        match sessions.iter().find(|(p, _)| p == path) {
            Some((_, slot)) => slot.clone(),
            None => {
                let slot = Slot::default();
                sessions.push((path.to_path_buf(), slot.clone()));
                slot
            }
        }
    };
    let mut current = slot.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(s) = current.upgrade() {
        return Ok(s);
    }
    let api = Api::load(path).map_err(OpenError::Load)?;
    // SAFETY: amdsmi_init takes its flags by value.
    let rc = unsafe { (api.init)(INIT_AMD_GPUS) };
    if rc != SUCCESS {
        let why = api.describe(rc);
        return Err(OpenError::Init(rc, why));
    }
    let session = Arc::new(Session {
        api: ManuallyDrop::new(api),
    });
    *current = Arc::downgrade(&session);
    Ok(session)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bdf_bits_format_as_a_pci_address() {
        // domain 0x0001, bus 0x83, device 0x1f, function 7.
        let bdf = (1 << 16) | (0x83 << 8) | (0x1f << 3) | 7;
        assert_eq!(format_bdf(bdf), "0001:83:1f.7");
        assert_eq!(format_bdf(3 << 8), "0000:03:00.0");
    }

    #[test]
    fn the_power_layout_follows_the_library_version() {
        // ROCm 6.1-6.3: year 24 first.
        assert_eq!(PowerLayout::from_version(24, 6), Some(PowerLayout::Rocm61));
        // ROCm 6.4: major 25 first, or a zero year left in front of it.
        assert_eq!(PowerLayout::from_version(25, 2), Some(PowerLayout::Rocm64));
        assert_eq!(PowerLayout::from_version(0, 25), Some(PowerLayout::Rocm64));
        // ROCm 7 and later.
        assert_eq!(PowerLayout::from_version(26, 0), Some(PowerLayout::Rocm70));
        // ROCm 5.7/6.0 (23.x) lay power out in two ways that the version does not tell apart.
        assert_eq!(PowerLayout::from_version(23, 4), None);
        assert_eq!(PowerLayout::from_version(0, 0), None);
    }

    #[test]
    fn all_ones_is_an_unsupported_field() {
        let mut buf: Buffer = [0; STRUCT_BUFFER / 8];
        buf[0] = u64::from(u32::MAX) | (250 << 32);
        let current = PowerField {
            offset: 0,
            width: 4,
        };
        let average = PowerField {
            offset: 4,
            width: 4,
        };
        assert_eq!(current.read(&buf), None);
        assert_eq!(average.read(&buf), Some(250));
    }
}
