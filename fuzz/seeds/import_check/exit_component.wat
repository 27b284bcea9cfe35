(component
  (import "wasi:cli/exit@0.2.0" (instance $exit (export "exit" (func (param "status" (result))))))
  (core func $exit (canon lower (func $exit "exit")))
  (core module $m
    (import "wasi" "exit" (func $exit (param i32)))
    (func (export "run") (result i32) (call $exit (i32.const 1)) unreachable))
  (core instance $wasi (export "exit" (func $exit)))
  (core instance $mi (instantiate $m (with "wasi" (instance $wasi))))
  (func $run (result (result)) (canon lift (core func $mi "run")))
  (instance $r (export "run" (func $run)))
  (export "wasi:cli/run@0.2.0" (instance $r)))
