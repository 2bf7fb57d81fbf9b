//! zlib-ng's Rust interface, served by `libz-rs-sys` (zlib-rs, a zlib written in Rust).
//!
//! Pingora asks `flate2` for its `zlib-ng` backend, and the real `libz-ng-sys` builds zlib-ng's C
//! sources with cmake. flate2 uses only a dozen zlib functions through this crate, so this crate
//! declares zlib-ng's `z_stream` (allocator fields as plain function pointers) and forwards each
//! call to zlib-rs, whose `z_stream` has the same layout (the same fields, the allocators as
//! `Option`s of the same function pointers, which have the same representation).
//! The workspace then builds with nothing but the Rust toolchain.
#![no_std]
#![allow(non_camel_case_types, non_snake_case, clippy::missing_safety_doc)]

use core::ffi::{c_char, c_int, c_uint, c_ulong, c_void};
use libz_rs_sys as rs;

pub type alloc_func = unsafe extern "C" fn(voidpf, uInt, uInt) -> voidpf;
pub type free_func = unsafe extern "C" fn(voidpf, voidpf);
pub type Bytef = u8;
pub type uInt = c_uint;
pub type uLong = c_ulong;
pub type voidpf = *mut c_void;
pub enum internal_state {}

/// zlib's stream, as zlib-ng's compat mode and `libz-ng-sys` declare it.
#[repr(C)]
pub struct z_stream {
    pub next_in: *mut Bytef,
    pub avail_in: uInt,
    pub total_in: uLong,
    pub next_out: *mut Bytef,
    pub avail_out: uInt,
    pub total_out: uLong,
    pub msg: *mut c_char,
    pub state: *mut internal_state,
    pub zalloc: alloc_func,
    pub zfree: free_func,
    pub opaque: voidpf,
    pub data_type: c_int,
    pub adler: uLong,
    pub reserved: uLong,
}
pub type z_streamp = *mut z_stream;

// The forwarding is sound only while the two layouts agree.
const _: () = assert!(core::mem::size_of::<z_stream>() == core::mem::size_of::<rs::z_stream>());
const _: () = assert!(core::mem::align_of::<z_stream>() == core::mem::align_of::<rs::z_stream>());

fn rs(strm: z_streamp) -> *mut rs::z_stream {
    strm.cast()
}

pub unsafe fn deflate(strm: z_streamp, flush: c_int) -> c_int {
    rs::deflate(rs(strm), flush)
}
pub unsafe fn deflateEnd(strm: z_streamp) -> c_int {
    rs::deflateEnd(rs(strm))
}
pub unsafe fn deflateReset(strm: z_streamp) -> c_int {
    rs::deflateReset(rs(strm))
}
pub unsafe fn deflateParams(strm: z_streamp, level: c_int, strategy: c_int) -> c_int {
    rs::deflateParams(rs(strm), level, strategy)
}
pub unsafe fn deflateSetDictionary(strm: z_streamp, dict: *const Bytef, len: uInt) -> c_int {
    rs::deflateSetDictionary(rs(strm), dict, len)
}
pub unsafe fn deflateInit2_(
    strm: z_streamp,
    level: c_int,
    method: c_int,
    window_bits: c_int,
    mem_level: c_int,
    strategy: c_int,
    version: *const c_char,
    stream_size: c_int,
) -> c_int {
    rs::deflateInit2_(
        rs(strm),
        level,
        method,
        window_bits,
        mem_level,
        strategy,
        version,
        stream_size,
    )
}
pub unsafe fn inflate(strm: z_streamp, flush: c_int) -> c_int {
    rs::inflate(rs(strm), flush)
}
pub unsafe fn inflateEnd(strm: z_streamp) -> c_int {
    rs::inflateEnd(rs(strm))
}
pub unsafe fn inflateReset2(strm: z_streamp, window_bits: c_int) -> c_int {
    rs::inflateReset2(rs(strm), window_bits)
}
pub unsafe fn inflateSetDictionary(strm: z_streamp, dict: *const Bytef, len: uInt) -> c_int {
    rs::inflateSetDictionary(rs(strm), dict, len)
}
pub unsafe fn inflateInit2_(
    strm: z_streamp,
    window_bits: c_int,
    version: *const c_char,
    stream_size: c_int,
) -> c_int {
    rs::inflateInit2_(rs(strm), window_bits, version, stream_size)
}
pub fn zlibVersion() -> *const c_char {
    rs::zlibVersion()
}

pub const Z_NO_FLUSH: c_int = 0;
pub const Z_PARTIAL_FLUSH: c_int = 1;
pub const Z_SYNC_FLUSH: c_int = 2;
pub const Z_FULL_FLUSH: c_int = 3;
pub const Z_FINISH: c_int = 4;
pub const Z_BLOCK: c_int = 5;
pub const Z_TREES: c_int = 6;
pub const Z_OK: c_int = 0;
pub const Z_STREAM_END: c_int = 1;
pub const Z_NEED_DICT: c_int = 2;
pub const Z_ERRNO: c_int = -1;
pub const Z_STREAM_ERROR: c_int = -2;
pub const Z_DATA_ERROR: c_int = -3;
pub const Z_MEM_ERROR: c_int = -4;
pub const Z_BUF_ERROR: c_int = -5;
pub const Z_VERSION_ERROR: c_int = -6;
pub const Z_NO_COMPRESSION: c_int = 0;
pub const Z_BEST_SPEED: c_int = 1;
pub const Z_BEST_COMPRESSION: c_int = 9;
pub const Z_DEFAULT_COMPRESSION: c_int = -1;
pub const Z_FILTERED: c_int = 1;
pub const Z_HUFFMAN_ONLY: c_int = 2;
pub const Z_RLE: c_int = 3;
pub const Z_FIXED: c_int = 4;
pub const Z_DEFAULT_STRATEGY: c_int = 0;
pub const Z_BINARY: c_int = 0;
pub const Z_TEXT: c_int = 1;
pub const Z_UNKNOWN: c_int = 2;
pub const Z_DEFLATED: c_int = 8;
