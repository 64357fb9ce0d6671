/* IMPORTANT
 * This snapshot file is auto-generated, but designed for humans.
 * It should be checked into source control and tracked carefully.
 * Re-generate by setting TAP_SNAPSHOT=1 and running tests.
 * Make sure to inspect the output below.  Do not ignore changes!
 */
'use strict'
exports[`test/quality/ocr-slice.test.ts > TAP > ocr reads the slice's pages > the lines read, page by page 1`] = `
Object {
  "pages/003.jpg": Array [
    "More Than The Cost Of",
    "License However,n accepting such obligations You may act only on Your own behalf and on our",
    "sole reponsibility,not on behalf of any other Conributorand only if You agree to indemnify,",
    "defendand hold each Contributor harmless for any liability incurred byor claims asserted against,",
    "such Contributor by reason of your accepting any such warranty or additional liability.",
    "END OF TERMS AND CONDITIONS APPENDIX: How to apply the Apache License to your work. To apply the Apache",
    "License to ou workattach the following boilerlate noticewith the fields enlosed by bracketsrelaced wih ou",
    "own identifying",
    "information. Dont include the brackets! The text should be enclosed in the appropriate comment syntax for the file",
    "format We also recommend that a file or class name and description of purpose be included on the same printed",
    "page” as the copyright notice for easier identification within third-party archives. Copyright [yyyy] [name",
    "of copyright owner] Licensed under the Apache License, Version 2.o (the License); you may not use",
    "this file except in compliance with the License. You may obtain a copy of the",
  ],
  "pages/029.png": Array [
    "Get The Standard Version.",
    "rights granted under this License from a particular Contributor are",
    "reinstated (a) provisionally, unless and until such Contributor",
    "explicitly and finally terminates Your grants, and (b) on an ongoing",
    "basis, if such Contributor fails to notify You of the non-compliance by",
    "some reasonable means prior to 60 days after You have come back",
    "into compliance. Moreover, Your grants",
    "from a particular Contributor are reinstated on an ongoing",
    "basis if such Contributor notifies You of the non-compliance",
    "by some reasonable means, this is the first time You have",
    "received notice of non-compliance with this License from",
    "such Contributor, and You become compliant prior to 30",
    "days after Your receipt of the notice. 5.2. If You initiate",
    "litigation against any entity by asserting a patent",
    "infringement claim (excluding declaratory judgment actions,",
    "counter-claims, and",
  ],
  "pages/030.jpg": Array [
    "Irrevocable (except As Stated In This Section)",
    "in manual pages (or equivalent).together with instructions on where to get the Standard Version.d make other distribution",
    "arrangements with the Copyright Holder.5.You may charge a reasonable copying fee forany distribution of this Package. You",
    "may charge any fee you choose for support of thisPackage.oumay not charge a fee for this Package itself Howeveryou may",
    "distribute this Package in aggregate with other (possibly commercial) programs as part of a larger (possibly commercial)",
    "software distribution provided that you do not advertise this Package as a product of your own.You may embed this Package's",
    "interpreter within an executable of yours bylinking);this shallbe construed asamere formof aggregationprovided that the",
    "complete Standard Version",
  ],
}
`

exports[`test/quality/ocr-slice.test.ts > TAP > ocr-fp32 reads the slice's pages > the lines read, page by page 1`] = `
Object {
  "pages/003.jpg": Array [
    "More Than The Cost Of",
    "License. However, in accepting such obligations, You may act only on Your own behalf and on our",
    "sole responsibility,not on behalf of any other Contributor, and only if You agree to indemnify,",
    "defend, and hold each Contributor harmless for any liability incurred by, or claims asserted against,",
    "such Contributor by reason of your accepting any such warranty or additional liability.",
    "END OF TERMS AND cONDITIONS APPENDIx: How to apply the Apache License to your work. To apply the Apache",
    "License to your work attach the following boilerplate notic with the felds nclosed by rackets replaced with ou",
    "own identifying",
    "information. Don't include the brackets! The text should be enclosed in the appropriate comment syntax for the file",
    "format. We also recommend that a fle or class name and description of purpose be included on the same printed",
    "page” as the copyright notice for easier identification within third-party archives. Copyright [yyyy] [name",
    "of copyright owner] Licensed under the Apache License, Version 2.o (the License); you may not use",
    "this file except in compliance with the License. You may obtain a copy of the",
  ],
  "pages/029.png": Array [
    "Get The Standard Version.",
    "rights granted under this License from a particular Contributor are",
    "reinstated (a) provisionally, unless and until such Contributor",
    "explicitly and finally terminates Your grants, and (b) on an ongoing",
    "basis, if such Contributor fails to notify You of the non-compliance by",
    "some reasonable means prior to 60 days after You have come back",
    "into compliance. Moreover, Your grants",
    "from a particular Contributor are reinstated on an ongoing",
    "basis if such Contributor notifies You of the non-compliance",
    "by some reasonable means, this is the first time You have",
    "received notice of non-compliance with this License from",
    "such Contributor, and You become compliant prior to 30",
    "days after Your receipt of the notice. 5.2. If You initiate",
    "litigation against any entity by asserting a patent",
    "infringement claim (excluding declaratory judgment actions,",
    "counter-claims, and",
  ],
  "pages/030.jpg": Array [
    "Irrevocable (except As Stated In This Section)",
    "in manual pages （or equivalent),together with instructions on where to get the Standard Version.d） make other distribution",
    "arrangements with the Copyright Holder.5. You may charge a reasonable copying fee for any distribution of this Package.You",
    "may charge any fee you choose for support of this Package. You may not charge a fee for this Package itself Howeveryou may",
    "distribute this Package in aggregate with other （possibly commercial) programs as part of a larger (possibly commercial)",
    "software distribution provided that you do not advertise this Package as a product of your own.You may embed this Package's",
    "interpreter within an executable of yours by linking);this shall be construed as a mere form of aggregation provided that the",
    "complete Standard Version",
  ],
}
`

exports[`test/quality/ocr-slice.test.ts > TAP > text-recognition reads the slice's lines > the text of each line 1`] = `
Array [
  "individual or Legal Entity exercising permissions granted by this",
  "licessgranted inetn. t oanConon",
  "A PARTICULAR PURPOSE. The End Mozilla",
  "as may be necessary to",
  "You under this",
  "Order #1850 shipped August 14, 1990",
  "Object form.3.",
  "Order #9731 shipped June 19, 2011",
  "Cll +1 (883) 947-4914 before 7 pm",
  "License does not grant",
  "for each Contribution on the",
  "Version 6.28.39 (build 283)",
]
`

exports[`test/quality/ocr-slice.test.ts > TAP > text-recognition-fp32 reads the slice's lines > the text of each line 1`] = `
Array [
  "individual or Legal Entity exercising permissions granted by this",
  "licesgranted in et thetoanyCnon",
  "A PARTICULAR PURPOSE. The End Mozilla",
  "as may be necessary to",
  "You under this",
  "Order #1850 shipped August 14, 1990",
  "Object form.3.",
  "Order #9731 shipped June 19, 2011",
  "Cll +1(883) 947-4914 before 7 pm",
  "License does not grant",
  "for each Contribution on the",
  "Version 6.28.39 (build 283)",
]
`
