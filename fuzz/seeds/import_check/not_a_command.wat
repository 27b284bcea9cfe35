(component
  (core module $m (func (export "answer") (result i32) i32.const 42))
  (core instance $mi (instantiate $m))
  (func (export "answer") (result u32) (canon lift (core func $mi "answer"))))
