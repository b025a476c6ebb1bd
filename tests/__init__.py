"""The test suite. Importing it (pytest does, before any test module or conftest) pins the CPU
kernels of the libraries that choose them at run time, so a test run reads the same numbers on
every x86-64 machine, whatever its CPU model.

Machines of the project's kind change CPU from day to day (AMD or Intel; with or without
AVX-512, VNNI, AMX). CTranslate2 picks Intel MKL on Intel CPUs and oneDNN on others, each with
its widest instruction set; int8 Whisper then reads the same audio differently ("by email" as
"Ibe" on one CPU and not another). So the tests, and every server process they start (they
inherit this environment), run:

- CTranslate2 on oneDNN (``CT2_USE_MKL=0``) with AVX2 kernels (``CT2_FORCE_CPU_ISA``), and
  oneDNN's own JIT capped at AVX2 (``ONEDNN_MAX_CPU_ISA``);
- numpy's OpenBLAS on its Haswell (AVX2) kernels (``OPENBLAS_CORETYPE``) in two threads
  (``OPENBLAS_NUM_THREADS``): it starts one per core, and its GEMM sums in another order with
  another thread count, which changes what Whisper hears (Whisper's features are numpy: with
  one thread, "Thank you." padded by nothing loops twice instead of five times). Two is what
  the project's 2-core machines run, so a 64-core workstation runs the tests as CI does.

AVX2 because every machine of this kind, and every x86 server since 2015, has it. A value set
in the environment already wins (``setdefault``), e.g. to run the suite on another ISA on
purpose. onnxruntime (silero VAD, Piper) has no such switch: its MLAS picks kernels itself. The
server sets none of these: users' machines run their fastest kernels.
"""

from __future__ import annotations

import os
import platform

if platform.machine().lower() in ("x86_64", "amd64"):
    for name, value in {
        "CT2_USE_MKL": "0",
        "CT2_FORCE_CPU_ISA": "AVX2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "OPENBLAS_CORETYPE": "Haswell",
    }.items():
        os.environ.setdefault(name, value)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")
