; Two 8-bit factors of 42 with 1 < x < 16: satisfiable (Boolector exits 10).
(set-logic QF_BV)
(declare-const x (_ BitVec 8))
(declare-const y (_ BitVec 8))
(assert (= (bvmul x y) #x2a))
(assert (bvult x #x10))
(assert (bvugt x #x01))
(check-sat)
(get-model)
