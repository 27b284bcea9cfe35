(component
  (import "wasi:io/poll@0.2.0" (instance $poll
    (export "pollable" (type $p (sub resource)))
    (export "poll" (func (param "in" (list (borrow $p))) (result (list u32))))))
  (core module $libc
    (memory (export "memory") 1)
    (func (export "realloc") (param i32 i32 i32 i32) (result i32) i32.const 1024))
  (core instance $libc (instantiate $libc))
  (core func $poll (canon lower (func $poll "poll") (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core module $main
    (import "wasi" "poll" (func $poll (param i32 i32 i32)))
    (func (export "run") (result i32) (call $poll (i32.const 0) (i32.const 0) (i32.const 16)) i32.const 0))
  (core instance $wasi (export "poll" (func $poll)))
  (core instance $main (instantiate $main (with "wasi" (instance $wasi))))
  (func $run (result (result)) (canon lift (core func $main "run")))
  (instance $r (export "run" (func $run)))
  (export "wasi:cli/run@0.2.0" (instance $r)))
