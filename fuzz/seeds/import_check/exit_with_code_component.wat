(component
  (import "wasi:cli/exit@0.2.12" (instance $exit (export "exit-with-code" (func (param "status-code" u8)))))
  (core func $exit (canon lower (func $exit "exit-with-code")))
  (core module $m
    (import "wasi" "exit-with-code" (func $exit (param i32)))
    (func (export "run") (result i32) (call $exit (i32.const 42)) unreachable))
  (core instance $wasi (export "exit-with-code" (func $exit)))
  (core instance $mi (instantiate $m (with "wasi" (instance $wasi))))
  (func $run (result (result)) (canon lift (core func $mi "run")))
  (instance $r (export "run" (func $run)))
  (export "wasi:cli/run@0.2.12" (instance $r)))
