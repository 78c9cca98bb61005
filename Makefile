# kvtrace / kvsim — one entry point.
#
#   make deps     install the system packages (apt-get; needs root)
#   make model    fetch the embedded model (SmolLM2-135M-Instruct Q4_1) into models/;
#                 MODEL=gemma3-270m fetches Gemma 3 270M (Q4_K_M) instead
#   make          build bin/kvtrace and bin/kvsim (and gpu/ when nvcc is present,
#                 bin/kvsim-mpi when mpicc is)
#   make test     check-layers, then the Criterion suite, plain and under ASan + UBSan
#   make test-fast   the suite without the model and the sanitizer (the inner loop)
#   make check-layers  every include points down the layer order (LAYERS below)
#   make bench    the benchmark table (bench/)
#   make demo     deps, model, build, then the demo run
#   make predict  does replay predict real generation? rho per budget (PREDICT_DIR)
#   make fixtures regenerate tests/fixtures/ with the independent Python packages
#   make fuzz     fuzz the GGUF and trace readers with libFuzzer (clang), FUZZ_RUNS inputs each
#
# Sources are found by wildcard: a new .c file in a folder is built into that folder's
# library without touching this file.  The two mains are apps/*_main.c.

CC       ?= gcc
NVCC     ?= nvcc
CUDA_ARCH ?= sm_90
PYTHON   ?= python3

PKGS     := hdf5-serial libpcre2-8 zlib liblz4
OPT      ?= -O2 -march=native
CFLAGS   ?= $(OPT) -g
CFLAGS   += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -fopenmp -pthread \
            $(shell pkg-config --cflags $(PKGS) 2>/dev/null) \
            -I/usr/include/x86_64-linux-gnu/openblas-openmp
LDLIBS   += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lopenblas -ldl -lm
SAN      := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

# The layers, bottom first.  A file may include headers of its own folder and of the
# folders before it, never after: each folder is compiled with only those on -I, and
# `make check-layers` names any include that points up.  Each folder is one static
# library, linked top first.  README.md, "Layout", draws the arrows.
.DEFAULT_GOAL := all

LAYERS   := common policies gpu plots model analysis trace sim confirm apps
MAINS    := apps/kvtrace_main.c apps/kvsim_main.c
TEST_SRC := $(wildcard tests/*.c)

comma    := ,
reverse   = $(if $1,$(call reverse,$(wordlist 2,$(words $1),$1)) $(firstword $1))
# The layers a file in folder $1 may include: $1 and those below it.
upto      = $(firstword $2)$(if $(filter $1,$(firstword $2)),, $(call upto,$1,$(wordlist 2,$(words $2),$2)))
folder    = $(firstword $(subst /, ,$1))
includes  = $(addprefix -I,$(if $(filter $(call folder,$1),$(LAYERS)),$(call upto,$(call folder,$1),$(LAYERS)),$(LAYERS) tests bench))

# CUDA: compiled and linked when nvcc is present (one architecture), otherwise the
# CPU-only stand-in gpu/gpu_none.c answers "no GPU support in this build".
HAVE_NVCC := $(shell command -v $(NVCC) >/dev/null 2>&1 && echo 1)
ifeq ($(HAVE_NVCC),1)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(shell command -v $(NVCC)))
GPU_SRC   := $(wildcard gpu/*.cu)
# libcublas is not linked: gpu/cublas_lazy.cu loads it when a CUDA forward pass starts
# (linked, it costs every process ~156 MB of memory at start).
GPU_LIBS  := -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudart -lstdc++
else
GPU_SRC   := gpu/gpu_none.c
GPU_LIBS  :=
endif

# MPI: bin/kvsim-mpi when mpicc is present: kvsim's own main with mpi/par_mpi.c
# (common/par.h over MPI) linked ahead of the same libraries, whose common/par_none.c
# it replaces; run it with mpirun or srun (docs/SCALE.md).  Without mpicc nothing
# changes and the MPI tests say skipped.
MPICC     ?= mpicc
HAVE_MPI  := $(shell command -v $(MPICC) >/dev/null 2>&1 && echo 1)
MPI_BIN   := $(if $(HAVE_MPI),bin/kvsim-mpi)

# Sources of each layer's library (gpu/: the CUDA files or the stand-in; apps/: the
# subcommands, without the two mains).
layer_src = $(if $(filter gpu,$1),$(GPU_SRC),$(filter-out $(MAINS),$(wildcard $1/*.c)))
obj_of    = $(patsubst %.cu,build/obj/%.o,$(patsubst %.c,build/$2/%.o,$1))
# Every library, top first; the whole policy library goes in, so that a policy loaded
# with --policy-lib finds every helper of policies/policy.h (exported by -rdynamic).
libs_in   = $(foreach l,$(call reverse,$(LAYERS)),$(if $(filter policies,$l),-Wl$(comma)--whole-archive $1/libpolicies.a -Wl$(comma)--no-whole-archive,$1/lib$l.a))
LIBS      := $(foreach l,$(LAYERS),build/lib/lib$l.a)
SAN_LIBS  := $(foreach l,$(LAYERS),build/san-lib/lib$l.a)

define layer_rules
build/lib/lib$1.a: $(call obj_of,$(call layer_src,$1),obj)
	@mkdir -p $$(dir $$@)
	@echo "  AR      $$@"
	@rm -f $$@ && ar rcs $$@ $$^
build/san-lib/lib$1.a: $(call obj_of,$(call layer_src,$1),san)
	@mkdir -p $$(dir $$@)
	@echo "  AR asan $$@"
	@rm -f $$@ && ar rcs $$@ $$^
endef
$(foreach l,$(LAYERS),$(eval $(call layer_rules,$l)))

.PHONY: all deps model test test-fast test-plain test-asan check-layers bench demo predict fixtures fuzz fuzz-gguf fuzz-trace clean check-nvcc help
all: check-nvcc bin/kvtrace bin/kvsim $(MPI_BIN)

help:
	@sed -n '3,18p' Makefile | sed 's/^# \{0,1\}//'

check-nvcc:
ifneq ($(HAVE_NVCC),1)
	@echo "note: nvcc not found: building without CUDA (gpu/ uses the CPU-only stand-in)"
endif

build/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(CFLAGS) $(call includes,$<) -MMD -MP -c $< -o $@

build/san/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC asan $<"
	@$(CC) $(CFLAGS) $(call includes,$<) $(SAN) -MMD -MP -c $< -o $@

build/obj/%.o: %.cu
	@mkdir -p $(dir $@)
	@echo "  NVCC    $< ($(CUDA_ARCH))"
	@$(NVCC) -O2 -arch=$(CUDA_ARCH) -Igpu -Icommon -c $< -o $@

bin/%: build/obj/apps/%_main.o $(LIBS)
	@mkdir -p bin
	@echo "  LD      $@"
	@$(CC) $(CFLAGS) -rdynamic $< $(call libs_in,build/lib) -o $@ $(LDLIBS) $(GPU_LIBS)

build/obj/mpi/par_mpi.o: mpi/par_mpi.c common/par.h
	@mkdir -p $(dir $@)
	@echo "  MPICC   $<"
	@$(MPICC) $(CFLAGS) -Icommon -c $< -o $@

bin/kvsim-mpi: build/obj/apps/kvsim_main.o build/obj/mpi/par_mpi.o $(LIBS)
	@mkdir -p bin
	@echo "  LD      $@"
	@$(MPICC) $(CFLAGS) -rdynamic $(filter %.o,$^) $(call libs_in,build/lib) -o $@ $(LDLIBS) $(GPU_LIBS)

build/tests: $(TEST_SRC:%.c=build/obj/%.o) $(LIBS)
	@echo "  LD      $@"
	@$(CC) $(CFLAGS) -rdynamic $(filter %.o,$^) $(call libs_in,build/lib) -o $@ $(LDLIBS) -lcriterion $(GPU_LIBS)

build/tests-asan: $(TEST_SRC:%.c=build/san/%.o) $(SAN_LIBS)
	@echo "  LD      $@"
	@$(CC) $(CFLAGS) $(SAN) -rdynamic $(filter %.o,$^) $(call libs_in,build/san-lib) -o $@ $(LDLIBS) -lcriterion $(GPU_LIBS)

check-layers:
	@sh scripts/check_layers.sh . $(LAYERS)

# The models: `make model` fetches MODEL (smollm2-135m, the default, or gemma3-270m);
# the tests use both.
SMOLLM2    := models/SmolLM2-135M-Instruct.Q4_1.gguf
GEMMA3     := models/gemma-3-270m-q4_k_m.gguf
MODEL      ?= smollm2-135m

# Criterion runs its tests in parallel (--jobs 2, one per core) with a per-test
# timeout; the sanitizer build repeats the whole suite.  Tests find the models and
# the binaries through these variables.
TEST_TRACE := build/test_trace.h5
TEST_ENV := KV_ROOT=$(CURDIR) KV_MODEL=$(abspath $(SMOLLM2)) KV_GEMMA_MODEL=$(abspath $(GEMMA3)) \
            KV_BIN=$(CURDIR)/bin KV_FIXTURES=$(CURDIR)/tests/fixtures KV_TRACE=$(CURDIR)/$(TEST_TRACE)
CRITERION_FLAGS ?= --jobs 2 --timeout 600

test: all check-layers test-plain test-asan

# The one short real trace every test that needs one reads (about 110 steps, all
# layers and heads, with queries), recorded once per build of kvtrace.
$(SMOLLM2):
	@sh scripts/fetch_model.sh smollm2-135m

$(GEMMA3):
	@sh scripts/fetch_model.sh gemma3-270m

$(TEST_TRACE): bin/kvtrace tests/fixtures/trace_prompt.txt $(SMOLLM2)
	@echo "  RECORD  $@"
	@./bin/kvtrace record $(SMOLLM2) --prompt-file tests/fixtures/trace_prompt.txt \
	    --max-new-tokens 24 --rows all --record-queries --force -o $@

# The inner loop: no model, no trace, no sanitizer (tests that need them say skipped).
test-fast: all build/tests
	KV_ROOT=$(CURDIR) KV_BIN=$(CURDIR)/bin KV_FIXTURES=$(CURDIR)/tests/fixtures \
	    ./build/tests $(CRITERION_FLAGS)

test-plain: build/tests $(TEST_TRACE) $(GEMMA3)
	$(TEST_ENV) ./build/tests $(CRITERION_FLAGS)

test-asan: build/tests-asan $(TEST_TRACE) $(GEMMA3)
	$(TEST_ENV) ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	    ./build/tests-asan $(CRITERION_FLAGS)

deps:
	@sh scripts/deps.sh

model:
	@sh scripts/fetch_model.sh $(MODEL)

build/bench: $(patsubst %.c,build/obj/%.o,$(wildcard bench/*.c)) $(LIBS)
	@echo "  LD      $@"
	@$(CC) $(CFLAGS) $(filter %.o,$^) $(call libs_in,build/lib) -o $@ $(LDLIBS) $(GPU_LIBS)

# The replay rows read a ~2048-token SmolLM2 trace with its rows stored, uncompressed and
# default-compressed, and row-free, recorded once into build/ (a few minutes; about 1.4
# GB, 0.8 GB and 0.2 GB); the long-context rows an 8K-token text made of the shipped
# texts (scripts/long_text.sh).
BENCH_TRACES := build/bench_t2048.h5 build/bench_t2048z.h5 build/bench_t2048f.h5
build/bench_t2048.h5 build/bench_t2048z.h5: bench/bench_prompt.txt | bin/kvtrace
	@echo "  RECORD  $@"
	@./bin/kvtrace record $(SMOLLM2) --prompt-file bench/bench_prompt.txt --max-new-tokens 0 \
	    --rows all --compress $(if $(findstring z.h5,$@),deflate:1,none) --force -o $@
build/bench_t2048f.h5: bench/bench_prompt.txt | bin/kvtrace
	@echo "  RECORD  $@"
	@./bin/kvtrace record $(SMOLLM2) --prompt-file bench/bench_prompt.txt --max-new-tokens 0 \
	    --force -o $@
build/long_8k.txt: | bin/kvtrace
	@echo "  TEXT    $@"
	@sh scripts/long_text.sh $(SMOLLM2) 8100 $@

bench: all build/bench $(BENCH_TRACES) build/long_8k.txt
	KV_BENCH_TRACE=build/bench_t2048.h5 KV_BENCH_TRACE_Z=build/bench_t2048z.h5 \
	    KV_BENCH_TRACE_FREE=build/bench_t2048f.h5 KV_BENCH_LONG=build/long_8k.txt ./build/bench

demo: deps model all
	@sh scripts/demo.sh $(MODEL)

# Replayed vs real metrics for a small configuration (about 4 minutes on 2 cores):
# docs/CONFIRM.md, "Prediction quality".
PREDICT_DIR ?= out/predict
predict: all $(if $(filter gemma3-270m,$(MODEL)),$(GEMMA3),$(SMOLLM2))
	@KV_PREDICT_MODEL=$(MODEL) bash scripts/predict.sh $(PREDICT_DIR)

fixtures:
	@sh tests/fixtures/make_fixtures.sh

# libFuzzer on the GGUF reader and dequantisers and on the trace reader (clang only;
# not part of `make test`).  GGUF seeds: the tiny GGUF of tests/gguf_builder.c and the
# model's first 8 KiB; trace seeds: four tiny real traces recorded here (rows stored,
# rebuilt, some of each; compressed or not).  -timeout makes an input that hangs a finding.  FUZZ_RUNS
# inputs each (FUZZ_MAX_TIME seconds at most, 0: no limit; the trace target in FUZZ_JOBS
# processes, going on past a finding); a crash leaves its input in build/fuzz/crash-*: turn it into a test
# (tests/test_gguf.c, tests/test_hostile.c with tests/fixtures/fuzz_*.h5).
FUZZ_CC    ?= clang
FUZZ_RUNS  ?= 200000
FUZZ_TIMEOUT ?= 10
FUZZ_MAX_TIME ?= 0
FUZZ_JOBS  ?= 1
FUZZ_FLAGS := -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
              -fno-sanitize-recover=undefined -Icommon -Imodel -Itests
FUZZ_MODEL := models/SmolLM2-135M-Instruct.Q4_1.gguf
FUZZ_TRACE_SRC := tests/fuzz/fuzz_trace.c trace/trace_h5.c trace/trace_read.c \
                  trace/trace_chunks.c trace/trace_rebuild.c trace/trace_info.c \
                  trace/trace_verify.c model/attention.c common/kv_err.c common/fp16.c \
                  common/vec.c
FUZZ_SEEDS := $(addprefix build/fuzz/trace_corpus/,rows.h5 free.h5 some.h5 raw.h5)

build/fuzz/fuzz_gguf: tests/fuzz/fuzz_gguf.c model/gguf.c model/dequant.c common/kv_err.c common/fp16.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) $^ -o $@

build/fuzz/fuzz_trace: $(FUZZ_TRACE_SRC)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -fopenmp -Wno-pass-failed -Itrace $(shell pkg-config --cflags $(PKGS)) \
	    -I/usr/include/x86_64-linux-gnu/openblas-openmp $^ -o $@ $(shell pkg-config --libs $(PKGS)) -lopenblas -lm

build/fuzz/make_seed: tests/fuzz/make_seed.c tests/gguf_builder.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -std=c11 -D_GNU_SOURCE -O1 -Itests $^ -o $@

# Tiny traces: 2 layers x 2 heads (1 x 1 uncompressed), 3 prompt tokens and 3
# generated: 10 to 40 KB each.
FUZZ_REC = ./bin/kvtrace record $(FUZZ_MODEL) "The cat sat" --max-new-tokens 3 --threads 1 \
           --force -o $@
build/fuzz/trace_corpus/rows.h5: | bin/kvtrace
	@mkdir -p $(dir $@)
	$(FUZZ_REC) --layers 0,1 --heads 0,3 --rows all --record-queries --compress deflate:1
build/fuzz/trace_corpus/free.h5: | bin/kvtrace
	@mkdir -p $(dir $@)
	$(FUZZ_REC) --layers 0,1 --heads 0,3 --rows none --compress deflate:1
build/fuzz/trace_corpus/some.h5: | bin/kvtrace
	@mkdir -p $(dir $@)
	$(FUZZ_REC) --layers 0,1 --heads 0,3 --rows 0:0 --dtype f32 --compress deflate:9
build/fuzz/trace_corpus/raw.h5: | bin/kvtrace
	@mkdir -p $(dir $@)
	$(FUZZ_REC) --layers 0 --heads 0 --rows none --qk-dtype f16 --compress none

fuzz: fuzz-gguf fuzz-trace

fuzz-gguf: build/fuzz/fuzz_gguf build/fuzz/make_seed
	@mkdir -p build/fuzz/corpus
	build/fuzz/make_seed build/fuzz/corpus/tiny.gguf
	@if [ -f $(FUZZ_MODEL) ]; then head -c 8192 $(FUZZ_MODEL) > build/fuzz/corpus/model_head.gguf; fi
	build/fuzz/fuzz_gguf -runs=$(FUZZ_RUNS) -max_len=8192 -seed=1 -timeout=$(FUZZ_TIMEOUT) \
	    -artifact_prefix=build/fuzz/ build/fuzz/corpus

fuzz-trace: build/fuzz/fuzz_trace $(FUZZ_SEEDS)
	@mkdir -p build/fuzz/trace_work
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 ASAN_OPTIONS=detect_leaks=0 \
	    build/fuzz/fuzz_trace -runs=$(FUZZ_RUNS) -max_len=81920 -seed=1 -timeout=$(FUZZ_TIMEOUT) -max_total_time=$(FUZZ_MAX_TIME) \
	    $(if $(filter-out 1,$(FUZZ_JOBS)),-fork=$(FUZZ_JOBS) -ignore_crashes=1 -ignore_timeouts=1) \
	    -detect_leaks=0 -print_final_stats=1 -artifact_prefix=build/fuzz/trace- \
	    build/fuzz/trace_work build/fuzz/trace_corpus
	@echo "leaks: every input of the corpus once more, with LeakSanitizer"
	OMP_NUM_THREADS=1 LSAN_OPTIONS=suppressions=tests/fuzz/lsan.supp:print_suppressions=0 \
	    build/fuzz/fuzz_trace -runs=0 -detect_leaks=1 -artifact_prefix=build/fuzz/trace-leak- \
	    build/fuzz/trace_work

clean:
	rm -rf build bin

-include $(shell find build -name '*.d' 2>/dev/null)
