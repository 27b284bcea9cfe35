(component
  (import "wasi:random/random@0.2.0" (instance $random
    (export "get-random-bytes" (func (param "len" u64) (result (list u8))))))
  (core module $libc
    (memory (export "memory") 1)
    (func (export "realloc") (param i32 i32 i32 i32) (result i32) i32.const 1024))
  (core instance $libc (instantiate $libc))
  (core func $bytes (canon lower (func $random "get-random-bytes") (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core module $main
    (import "wasi" "get-random-bytes" (func $bytes (param i64 i32)))
    ;; 60 MiB of random bytes: more than a 48 MiB workload's memory holds.
    (func (export "run") (result i32) (call $bytes (i64.const 62914560) (i32.const 16)) i32.const 0))
  (core instance $wasi (export "get-random-bytes" (func $bytes)))
  (core instance $main (instantiate $main (with "wasi" (instance $wasi))))
  (func $run (result (result)) (canon lift (core func $main "run")))
  (instance $r (export "run" (func $run)))
  (export "wasi:cli/run@0.2.0" (instance $r)))
