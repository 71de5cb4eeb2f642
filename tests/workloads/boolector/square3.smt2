; No 8-bit square is 3 modulo 256 (squares are 0, 1 or 4 modulo 8):
; unsatisfiable (Boolector exits 20).
(set-logic QF_BV)
(declare-const x (_ BitVec 8))
(assert (= (bvmul x x) #x03))
(check-sat)
