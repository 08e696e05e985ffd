//! Every rule of `seccomp/default.json`, tried from inside a real sandbox. The policy file
//! drives the test: a rule whose syscall this file cannot name fails the suite, so a new
//! rule cannot go untested. Root only. (The BPF itself is also checked, without a
//! kernel, by the unit tests in `src/seccomp.rs`.)

// An integration test crate is all tests: the lints for tests inside `src/` do not fit it.
#![allow(clippy::tests_outside_test_module, clippy::unwrap_used)]
#![cfg(target_arch = "x86_64")]

mod common;

use std::collections::BTreeMap;

use common::python;
use serde_json::Value;

/// x86_64 numbers of every syscall the policy names.
fn number(name: &str) -> i64 {
    let table: BTreeMap<&str, i64> = [
        ("mount", libc::SYS_mount),
        ("umount2", libc::SYS_umount2),
        ("pivot_root", libc::SYS_pivot_root),
        ("chroot", libc::SYS_chroot),
        ("fsopen", libc::SYS_fsopen),
        ("fsconfig", libc::SYS_fsconfig),
        ("fsmount", libc::SYS_fsmount),
        ("fspick", libc::SYS_fspick),
        ("open_tree", libc::SYS_open_tree),
        ("move_mount", libc::SYS_move_mount),
        ("mount_setattr", libc::SYS_mount_setattr),
        ("unshare", libc::SYS_unshare),
        ("setns", libc::SYS_setns),
        ("clone", libc::SYS_clone),
        ("clone3", libc::SYS_clone3),
        ("socket", libc::SYS_socket),
        ("socketpair", libc::SYS_socketpair),
        ("bpf", libc::SYS_bpf),
        ("perf_event_open", libc::SYS_perf_event_open),
        ("keyctl", libc::SYS_keyctl),
        ("add_key", libc::SYS_add_key),
        ("request_key", libc::SYS_request_key),
        ("userfaultfd", libc::SYS_userfaultfd),
        ("io_uring_setup", libc::SYS_io_uring_setup),
        ("io_uring_enter", libc::SYS_io_uring_enter),
        ("io_uring_register", libc::SYS_io_uring_register),
        ("swapon", libc::SYS_swapon),
        ("swapoff", libc::SYS_swapoff),
        ("acct", libc::SYS_acct),
        ("syslog", libc::SYS_syslog),
        ("settimeofday", libc::SYS_settimeofday),
        ("clock_settime", libc::SYS_clock_settime),
        ("clock_adjtime", libc::SYS_clock_adjtime),
        ("adjtimex", libc::SYS_adjtimex),
        ("open_by_handle_at", libc::SYS_open_by_handle_at),
        ("name_to_handle_at", libc::SYS_name_to_handle_at),
        ("fanotify_init", libc::SYS_fanotify_init),
        ("quotactl", libc::SYS_quotactl),
        ("vhangup", libc::SYS_vhangup),
        ("lookup_dcookie", libc::SYS_lookup_dcookie),
        ("iopl", libc::SYS_iopl),
        ("ioperm", libc::SYS_ioperm),
        ("uselib", libc::SYS_uselib),
        ("personality", libc::SYS_personality),
        ("ptrace", libc::SYS_ptrace),
        ("process_vm_readv", libc::SYS_process_vm_readv),
        ("process_vm_writev", libc::SYS_process_vm_writev),
        ("kexec_load", libc::SYS_kexec_load),
        ("kexec_file_load", libc::SYS_kexec_file_load),
        ("init_module", libc::SYS_init_module),
        ("finit_module", libc::SYS_finit_module),
        ("delete_module", libc::SYS_delete_module),
        ("reboot", libc::SYS_reboot),
    ]
    .into_iter()
    .collect();
    *table.get(name).unwrap_or_else(|| panic!("seccomp/default.json names {name}: add it to this test"))
}

/// (syscall, first argument) for every rule of `filter`: a rule with argument conditions
/// on the first argument gets a value that meets all of them.
fn rules(filter: &str) -> Vec<(String, u64)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/seccomp/default.json");
    let policy: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    policy[filter]["filter"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["syscall"].as_str().unwrap().to_owned(), matching_arg0(r["args"].as_array())))
        .collect()
}

/// A first argument that meets every condition of a rule (masked_eq gives its value; a
/// list of `ne` gives the first number from 40 on that none of them excludes).
fn matching_arg0(conditions: Option<&Vec<Value>>) -> u64 {
    let Some(conds) = conditions else { return 0 };
    let masked = conds.iter().find(|c| c["op"].get("masked_eq").is_some());
    if let Some(c) = masked {
        return c["val"].as_u64().unwrap();
    }
    let excluded: Vec<u64> = conds.iter().filter(|c| c["op"] == "ne").map(|c| c["val"].as_u64().unwrap()).collect();
    assert_eq!(excluded.len(), conds.len(), "unsupported condition in {conds:?}: teach this test");
    (40..).find(|v| !excluded.contains(v)).unwrap()
}

/// Python that makes each call and prints `name result errno`.
fn probe(calls: &[(String, u64)]) -> String {
    let mut code = String::from("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nL = ctypes.c_long\n");
    for (name, arg0) in calls {
        code.push_str(&format!(
            "ctypes.set_errno(0)\nr = libc.syscall(L({}), L({arg0}), L(0), L(0), L(0), L(0), L(0))\nprint('{name}', r, ctypes.get_errno())\n",
            number(name)
        ));
    }
    code
}

#[test]
fn eperm_rules_fail_with_eperm_and_the_program_goes_on() {
    require_privileged!();
    let calls = rules("eperm");
    assert!(calls.len() > 30, "the policy's EPERM list");
    let r = python(&[], &(probe(&calls) + "print('still running')"));
    r.expect("ok");
    let lines: Vec<&str> = r.stdout().lines().collect();
    assert_eq!(lines.len(), calls.len() + 1, "{}", r.stdout());
    for line in &lines[..calls.len()] {
        assert!(line.ends_with(" -1 1"), "expected -1 EPERM: {line}");
    }
    assert_eq!(lines[calls.len()], "still running");
}

#[test]
fn eperm_comes_from_the_filter_not_from_missing_privileges() {
    require_privileged!();
    // each of these would succeed or fail differently for an unprivileged process without
    // the filter: unshare(0) and personality(READ_IMPLIES_EXEC) succeed, setns(-1) is
    // EBADF, clone(CLONE_NEWUSER) makes a user namespace, io_uring_setup(1, NULL) is EFAULT
    let code = "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nL = ctypes.c_long\n\
                for nr, a, b in ((272, 0, 0), (308, -1, 0), (56, 0x10000000 | 17, 0), (425, 1, 0), (135, 0x400000, 0)):\n    \
                ctypes.set_errno(0)\n    print(libc.syscall(L(nr), L(a), L(b), L(0), L(0), L(0)), ctypes.get_errno())";
    let r = python(&[], code);
    r.expect("ok");
    assert_eq!(r.stdout(), "-1 1\n".repeat(5));
}

#[test]
fn only_unix_inet_and_netlink_sockets_can_be_made() {
    require_privileged!();
    let code = "import socket\n\
                for fam, kind in ((socket.AF_VSOCK, socket.SOCK_STREAM), (socket.AF_PACKET, socket.SOCK_RAW), (17, socket.SOCK_DGRAM), (socket.AF_UNIX, socket.SOCK_STREAM), (socket.AF_INET, socket.SOCK_STREAM), (socket.AF_INET6, socket.SOCK_DGRAM), (socket.AF_NETLINK, socket.SOCK_RAW)):\n    \
                try:\n        socket.socket(fam, kind).close(); print(int(fam), 'ok')\n    \
                except OSError as e:\n        print(int(fam), e.errno)\n\
                a, b = socket.socketpair(); print('pair ok')";
    let r = python(&[], code);
    r.expect("ok");
    assert_eq!(r.stdout(), "40 1\n17 1\n17 1\n1 ok\n2 ok\n10 ok\n16 ok\npair ok\n");
}

#[test]
fn allowed_forms_still_work() {
    require_privileged!();
    // fork (clone without namespace flags), threads, and the personality query
    let code = "import os, threading, ctypes\npid = os.fork()\nif pid == 0: os._exit(7)\n\
                print(os.WEXITSTATUS(os.waitpid(pid, 0)[1]))\nt = threading.Thread(target=print, args=('thread',))\nt.start(); t.join()\n\
                print(ctypes.CDLL(None).personality(ctypes.c_ulong(0xffffffff)) >= 0)";
    let r = python(&[], code);
    r.expect("ok");
    assert_eq!(r.stdout(), "7\nthread\nTrue\n");
}

#[test]
fn clone3_returns_enosys_so_libc_falls_back_to_clone() {
    require_privileged!();
    let calls = rules("enosys");
    assert_eq!(calls, [("clone3".to_owned(), 0)]);
    let r = python(&[], &probe(&calls));
    r.expect("ok");
    assert_eq!(r.stdout(), "clone3 -1 38\n");
}

#[test]
fn kill_rules_end_the_run_as_blocked_syscall() {
    require_privileged!();
    let calls = rules("kill");
    assert!(calls.len() >= 9);
    for call in calls {
        let r = python(&[], &(probe(std::slice::from_ref(&call)) + "print('survived')"));
        r.expect("blocked_syscall");
        assert_eq!(r.signal(), Some(31), "{}: killed by SIGSYS", call.0);
        assert_eq!(r.stdout(), "", "{}: nothing runs after the call", call.0);
        assert_eq!(r.exit, 9);
    }
}

#[test]
fn x32_syscalls_are_killed() {
    require_privileged!();
    // getpid through the x32 ABI: the native architecture value, bit 30 set
    let code = "import ctypes\nprint(ctypes.CDLL(None).syscall(ctypes.c_long(0x40000000 | 39)))";
    let r = python(&[], code);
    r.expect("blocked_syscall");
}
