"""One BLAS thread per service process (ops.blas) and the ORT session options."""

import subprocess
import sys

from ops.blas import BLAS_THREAD_VARS, single_thread_blas
from scoreid.inference import ort_session_options


def test_single_thread_blas_defaults_but_keeps_explicit_settings():
    env = {"MKL_NUM_THREADS": "4"}
    single_thread_blas(env)
    assert env["OPENBLAS_NUM_THREADS"] == "1"
    assert env["MKL_NUM_THREADS"] == "4"
    assert set(BLAS_THREAD_VARS) <= set(env)


def test_service_package_import_sets_blas_threads_before_numpy():
    code = "import os, encoder_svc, numpy; print(os.environ['OPENBLAS_NUM_THREADS'])"
    env = {"PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "1"


def test_ort_session_options_threads_and_no_spinning():
    opts = ort_session_options(1)
    assert opts.intra_op_num_threads == 1
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert ort_session_options(None).intra_op_num_threads == 0
