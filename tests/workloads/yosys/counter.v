// A 4-bit counter with synchronous reset and enable: the design the tests
// synthesize with Yosys inside a Keep, then simulate gate by gate.
module counter(input clk, input rst, input en, output reg [3:0] q);
    always @(posedge clk)
        if (rst)
            q <= 4'd0;
        else if (en)
            q <= q + 4'd1;
endmodule
