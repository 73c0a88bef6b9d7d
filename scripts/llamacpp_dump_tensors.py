import sys, ctypes, numpy as np
sys.path.insert(0, "/work/main/scripts")
import gen_llamacpp_goldens as g
ll = g.ll
lc = g.LlamaCpp()
path = sys.argv[1]; ids = [int(x) for x in sys.argv[2].split(",")]; out = sys.argv[3]
mp = ll.llama_model_default_params(); mp.n_gpu_layers = 0
m = ll.llama_model_load_from_file(path.encode(), mp)
nv = ll.llama_vocab_n_tokens(ll.llama_model_get_vocab(m))
dumps = {}
@ll.ggml_backend_sched_eval_callback
def cb(t, ask, ud):
    base = ctypes.cast(t, ctypes.c_void_p).value
    name = ctypes.string_at(base + 256, 64).split(b"\0")[0].decode()
    if ask:
        return True
    typ = ctypes.c_int32.from_address(base).value
    ne = [ctypes.c_int64.from_address(base + 16 + 8*i).value for i in range(4)]
    nb = [ctypes.c_uint64.from_address(base + 48 + 8*i).value for i in range(4)]
    data = ctypes.c_void_p.from_address(base + 248).value
    if typ == 0 and data and nb[0] == 4 and nb[1] == 4*ne[0]:
        n = ne[0]*ne[1]*ne[2]*ne[3]
        contiguous = nb[2] == nb[1]*ne[1] and nb[3] == nb[2]*ne[2]
        if contiguous:
            a = np.ctypeslib.as_array((ctypes.c_float * n).from_address(data)).copy()
            dumps[name] = a.reshape(ne[3], ne[2], ne[1], ne[0])
    return True
cp = ll.llama_context_default_params()
cp.n_ctx = cp.n_batch = cp.n_ubatch = 512; cp.n_seq_max = 1; cp.n_threads = cp.n_threads_batch = 2
cp.cb_eval = cb
ctx = ll.llama_init_from_model(m, cp)
logits = g.decode(ctx, ids, nv)
np.savez(out, **dumps)
print(sorted(dumps.keys())[:80], len(dumps))
