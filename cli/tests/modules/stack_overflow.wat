(module (func $f (call $f)) (func (export "_start") (call $f)))
