# codeexec session driver for Python: runs cells in one namespace, notebook-style.
# Protocol (fd 0, moved away so cells read /dev/null): a line "NONCE TIMEOUT_MS LENGTH",
# then LENGTH bytes of UTF-8 code. The cell's output goes to fd 1 and 2 as it is written;
# the driver then writes "\x1e" NONCE and one JSON line with the cell's result to fd 1.
import ast, base64, io, json, os, signal, sys, traceback

_proto = os.fdopen(os.dup(0), "rb")
_null = os.open("/dev/null", os.O_RDONLY)
os.dup2(_null, 0)
os.close(_null)
sys.stdin = open("/dev/null")


class CellTimeout(BaseException):
    pass


def _alarm(signum, frame):
    raise CellTimeout()


signal.signal(signal.SIGALRM, _alarm)
_ns = {"__name__": "__main__", "__builtins__": __builtins__}


def _figures():
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return []
    out = []
    for num in plt.get_fignums():
        buf = io.BytesIO()
        plt.figure(num).savefig(buf, format="png")
        out.append({"mime": "image/png", "data": base64.b64encode(buf.getvalue()).decode()})
    plt.close("all")
    return out


def _run(code, timeout_ms):
    res = {"status": "ok", "value": None, "error": None}
    try:
        tree = ast.parse(code, "<cell>", "exec")
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        signal.setitimer(signal.ITIMER_REAL, timeout_ms / 1000.0)
        try:
            exec(compile(tree, "<cell>", "exec"), _ns)
            if last is not None:
                v = eval(compile(last, "<cell>", "eval"), _ns)
                if v is not None:
                    res["value"] = repr(v)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except CellTimeout:
        res["status"] = "timeout"
    except MemoryError:
        res["status"] = "memory"
    except BaseException as e:
        res["status"] = "error"
        res["error"] = {"name": type(e).__name__, "message": str(e)}
        tb = list(traceback.extract_tb(e.__traceback__))
        while tb and tb[0].filename != "<cell>":
            tb = tb[1:]
        if tb:
            sys.stderr.write("Traceback (most recent call last):\n")
            sys.stderr.write("".join(traceback.format_list(tb)))
        sys.stderr.write("".join(traceback.format_exception_only(type(e), e)))
    return res


def _main():
    while True:
        header = _proto.readline()
        if not header:
            return
        nonce, timeout_ms, length = header.split()
        code = _proto.read(int(length)).decode("utf-8", "replace")
        try:
            res = _run(code, int(timeout_ms))
            res["display"] = _figures()
        except CellTimeout:
            res = {"status": "timeout", "value": None, "error": None, "display": []}
        for s in (sys.stdout, sys.stderr):
            try:
                s.flush()
            except BaseException:
                pass
        line = b"\x1e" + nonce + json.dumps(res).encode() + b"\n"
        view = memoryview(line)
        while view:
            view = view[os.write(1, view):]


_main()
