(component
  (import "wasi:keyvalue/store@0.2.0" (instance))
  (core module $m (func (export "run") (result i32) i32.const 0))
  (core instance $mi (instantiate $m))
  (func $run (result (result)) (canon lift (core func $mi "run")))
  (instance $r (export "run" (func $run)))
  (export "wasi:cli/run@0.2.3" (instance $r)))
